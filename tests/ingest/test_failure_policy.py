"""The ingest failure policy (docs/design.md "Failure policy"): failures caused by a setting
are fetched again when the setting changes, data failures are permanent until
`--retry-failed[=KIND]`; two rows with one id (probe 1.30). Rows 9.5 and 1.30 of the
reliability probe."""

from __future__ import annotations

import dataclasses
import json

from click.testing import CliRunner

from entityseg_data.cli.main import cli
from entityseg_data.config.ingest import IngestConfig
from entityseg_data.ingest.failures import failure_class, should_retry
from entityseg_data.ingest.pipeline import ingest
from entityseg_data.ingest.sources import UrlListSource

CFG = IngestConfig(
    nsfw_enabled=False, workers=2, per_host_rps=0, timeout=10.0, retries=0, backoff=0.01
)


def _url_list(tmp_path, server, images, n=3, ctype="image/jpeg", name="urls.txt"):
    urls = [
        server.route(f"/ok{i}.jpg", "ok", images.jpeg(320, 240, seed=100 + i), ctype)
        for i in range(n)
    ]
    path = tmp_path / name
    path.write_text("\n".join(urls) + "\n", encoding="utf-8")
    return path, urls


def _hits(server, n=3) -> int:
    return sum(server.state.hits.get(f"/ok{i}.jpg", 0) for i in range(n))


def _counts(report, source):
    return report.sources[source.label].to_dict()


def test_probe_9_5_too_small_max_bytes_is_re_evaluated_when_fixed(
    workspace, server, images, tmp_path
):
    """probe 9.5 (b): `--set ingest.max_bytes=1000` -> too_large=3; a rerun with the default
    limit used to say `skipped 3` forever. Now the items are fetched again because the setting
    that decided the failure changed; with the same setting they stay skipped."""
    path, _ = _url_list(tmp_path, server, images)
    src = UrlListSource(path=path)
    small = dataclasses.replace(CFG, max_bytes=1000)
    first = _counts(ingest(workspace, [src], small), src)
    assert first["failed"] == {"too_large": 3}
    hits = _hits(server)
    same = _counts(ingest(workspace, [src], small), src)
    assert same["skipped"] == 3 and _hits(server) == hits  # nothing changed: no refetch
    fixed = _counts(ingest(workspace, [src], CFG), src)
    assert fixed["fetched"] == 3 and fixed["accepted"] == 3 and fixed["failed"] == {}
    with workspace.catalog() as cat:
        assert cat.failure_counts() == {} and cat.count_images("accepted") == 3


def test_probe_9_5_allowed_mime_typo_is_re_evaluated_when_fixed(
    workspace, server, images, tmp_path
):
    """probe 9.5 (c): an `allowed_mime` typo rejected every item as content_type, for good."""
    path, _ = _url_list(tmp_path, server, images)
    src = UrlListSource(path=path)
    typo = dataclasses.replace(CFG, allowed_mime=("image/jpg",))
    assert _counts(ingest(workspace, [src], typo), src)["failed"] == {"content_type": 3}
    with workspace.catalog() as cat:
        (item, *_) = cat.failed_items("content_type")
        assert item.meta["settings"] == {"allowed_mime": ["image/jpg"]}
    fixed = _counts(ingest(workspace, [src], CFG), src)
    assert fixed["accepted"] == 3


def test_probe_9_5_ledger_written_before_the_policy_is_re_evaluated(
    workspace, server, images, tmp_path
):
    """probe 9.5 (a): ledgers poisoned by the old version (no settings stored; timeout -1 gave
    internal_error) are fetched again by a rerun instead of being skipped forever."""
    path, urls = _url_list(tmp_path, server, images)
    src = UrlListSource(path=path)
    with workspace.catalog() as cat:
        cat.record_item("urls", urls[0], "failed", url=urls[0], error_kind="internal_error")
        cat.record_item("urls", urls[1], "failed", url=urls[1], error_kind="too_large")
        cat.record_item("urls", urls[2], "failed", url=urls[2], error_kind="content_type")
    rerun = _counts(ingest(workspace, [src], CFG), src)
    assert rerun["skipped"] == 0 and rerun["accepted"] == 3


def test_probe_9_5_data_failures_are_permanent_until_retry_failed(
    workspace, server, images, tmp_path
):
    """probe 9.5: there was no way to reset failed items short of editing SQL. A 404 stays
    failed across reruns (no refetch) until `ingest --retry-failed=http_404` (or bare
    `--retry-failed`), which fetches it again."""
    urls = [
        server.url("/gone.jpg"),
        server.route("/ok.jpg", "ok", images.jpeg(seed=5), "image/jpeg"),
    ]
    path = tmp_path / "urls.txt"
    path.write_text("\n".join(urls) + "\n", encoding="utf-8")
    src = UrlListSource(path=path)
    assert _counts(ingest(workspace, [src], CFG), src)["failed"] == {"http_404": 1}
    assert server.state.hits["/gone.jpg"] == 1
    again = _counts(ingest(workspace, [src], CFG), src)
    assert again["skipped"] == 2 and server.state.hits["/gone.jpg"] == 1
    # the file appears on the server; the user asks for the 404s again
    server.route("/gone.jpg", "ok", images.jpeg(seed=6), "image/jpeg")
    runner = CliRunner()
    base = ["-w", str(workspace.root), "ingest", f"urls:{path}", "--no-nsfw", "--json"]
    res = runner.invoke(cli, [*base, "--retry-failed=timeout"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["reset"] == 0 and out["total"]["skipped"] == 2  # other kinds untouched
    res = runner.invoke(cli, [*base, "--retry-failed=http_404"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["reset"] == 1 and out["total"]["accepted"] == 1 and out["total"]["skipped"] == 1
    assert server.state.hits["/gone.jpg"] == 2
    with workspace.catalog() as cat:
        assert cat.failure_counts() == {} and cat.count_images("accepted") == 2


def test_probe_9_5_retry_failed_without_kind_and_errors_listing(workspace, server, tmp_path):
    """`--retry-failed` with no KIND retries every failed item; the SOURCE may follow it;
    `--errors` says for each kind whether a rerun retries it."""
    path = tmp_path / "urls.txt"
    path.write_text(server.url("/a.jpg") + "\n" + server.url("/b.jpg") + "\n", encoding="utf-8")
    runner = CliRunner()
    base = ["-w", str(workspace.root), "ingest"]
    res = runner.invoke(cli, [*base, f"urls:{path}", "--no-nsfw", "--set", "ingest.retries=0"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, [*base, "--errors"])
    assert "http_404: 2 (permanent: --retry-failed=http_404 fetches them again)" in res.output
    res = runner.invoke(cli, [*base, "--no-nsfw", "--json", "--retry-failed", f"urls:{path}"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["reset"] == 2
    assert server.state.hits["/a.jpg"] == 2 and server.state.hits["/b.jpg"] == 2
    res = runner.invoke(cli, [*base, "--retry-failed"])
    assert res.exit_code == 2 and "give the SOURCE" in res.output


def test_failure_classes_and_retry_rule():
    cfg = IngestConfig()
    assert failure_class("timeout") == failure_class("http_503") == "transient"
    assert failure_class("internal_error") == "transient"
    assert failure_class("too_large") == failure_class("content_type") == "setting"
    assert failure_class("http_404") == failure_class("not_image") == "permanent"
    assert failure_class("bad_record") == "source" and should_retry("bad_record", {}, cfg)
    assert should_retry("timeout", {}, cfg)
    assert not should_retry("timeout", {}, dataclasses.replace(cfg, retry_failed=False))
    assert not should_retry("too_large", {"settings": {"max_bytes": cfg.max_bytes}}, cfg)
    assert should_retry("too_large", {"settings": {"max_bytes": 10}}, cfg)
    assert not should_retry("http_404", {}, cfg)


def test_probe_1_30_two_rows_with_one_id_are_reported_not_silently_dropped(
    workspace, server, images, tmp_path
):
    """probe 1.30: a CSV with two rows sharing `id=same` but different URLs: the second URL
    was downloaded, then counted as `skipped` ('done in an earlier run') and stored nowhere.
    Now the second row is not downloaded, and the run reports a `duplicate_id` failure naming
    the id and both URLs (the first row is ingested). Identical repeated rows are skipped."""
    u1 = server.route("/ok23.jpg", "ok", images.jpeg(seed=23), "image/jpeg")
    u2 = server.route("/ok24.jpg", "ok", images.jpeg(seed=24), "image/jpeg")
    u3 = server.route("/ok25.jpg", "ok", images.jpeg(seed=25), "image/jpeg")
    path = tmp_path / "rows.csv"
    path.write_text(f"id,url\nsame,{u1}\nsame,{u2}\nother,{u3}\nother,{u3}\n", encoding="utf-8")
    src = UrlListSource(path=path)
    rep = ingest(workspace, [src], CFG)
    c = _counts(rep, src)
    assert c["seen"] == 4 and c["fetched"] == 2 and c["accepted"] == 2
    assert c["failed"] == {"duplicate_id": 1} and c["skipped"] == 1  # the repeated row
    assert server.state.hits.get("/ok24.jpg", 0) == 0  # never downloaded
    assert server.state.hits["/ok25.jpg"] == 1
    (msg,) = c["messages"]
    assert "'same'" in msg and u1 in msg and u2 in msg and "own id" in msg
    # the rerun reports it again (the id conflict is in the source, not in the catalog)
    again = _counts(ingest(workspace, [src], CFG), src)
    assert again["failed"] == {"duplicate_id": 1} and again["skipped"] == 3
    res = CliRunner().invoke(
        cli, ["-w", str(workspace.root), "ingest", f"urls:{path}", "--no-nsfw"]
    )
    assert res.exit_code == 0 and "duplicate_id=1" in res.output
    assert "is used by two rows" in res.output


def test_a_bad_row_fixed_in_the_list_is_ingested_by_the_rerun(workspace, server, images, tmp_path):
    """A `bad_record` failure (a row the source cannot describe) is decided without a download:
    the rerun reads the row again, so fixing the list is enough (no --retry-failed)."""
    url = server.route("/fixed.jpg", "ok", images.jpeg(seed=31), "image/jpeg")
    path = tmp_path / "rows.csv"
    path.write_text("id,url\nr1,\n", encoding="utf-8")  # no URL yet
    src = UrlListSource(path=path)
    assert _counts(ingest(workspace, [src], CFG), src)["failed"] == {"bad_record": 1}
    assert _counts(ingest(workspace, [src], CFG), src)["failed"] == {"bad_record": 1}
    path.write_text(f"id,url\nr1,{url}\n", encoding="utf-8")
    fixed = _counts(ingest(workspace, [src], CFG), src)
    assert fixed["accepted"] == 1 and fixed["failed"] == {}

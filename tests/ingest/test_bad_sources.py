"""Bad source files and folder entries (issue 15, probe sections 1 and 2): one clear error naming
the file and line, or one failed item naming the entry while the rest of the source goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cli_support
import pytest

from entityseg_data.config.ingest import IngestConfig
from entityseg_data.errors import DataError
from entityseg_data.ingest.pipeline import ingest
from entityseg_data.ingest.sources import FolderSource, UrlListSource, parse_source

CFG = IngestConfig(nsfw_enabled=False, min_side=16, workers=2, per_host_rps=0, retries=0)


def _failed(workspace) -> dict[str, tuple[str, str]]:
    """Failed ledger entries: source id -> (kind, message)."""
    with workspace.catalog() as cat:
        return {it.source_id: (it.error_kind, it.error) for it in cat.failed_items(any_kind=True)}


def _accepted_ids(workspace) -> set[str]:
    with workspace.catalog() as cat:
        return {rec.source_id for rec in cat.images(status="accepted")}


# ------------------------------------------------------------------------------ URL lists


def test_url_with_a_space_is_kept_whole_and_fetched(workspace, tmp_path, server, images):
    """probe 1.24: a `.txt` line holding a space is one URL (sent percent-encoded), never cut
    at the space."""
    body = images.jpeg(64, 48, seed=12)
    server.route("/f/ok12%20space.jpg", "ok", body, "image/jpeg")
    url = server.url("/f/ok12 space.jpg")
    lst = tmp_path / "urls.txt"
    lst.write_text(f"{url}\n")
    assert [i.url for i in UrlListSource(path=lst).items()] == [url]
    report = ingest(workspace, [UrlListSource(path=lst)], CFG)
    assert report.sources[f"urls:{lst}"].to_dict()["accepted"] == 1
    assert _accepted_ids(workspace) == {url}


def test_utf8_bom_in_a_txt_list_is_dropped(tmp_path):
    """probe 1.28: the first URL of a `.txt` saved with a byte-order mark is not `bad_url`."""
    lst = tmp_path / "bom.txt"
    lst.write_text("http://h/ok19.jpg\nhttp://h/ok20.jpg\n", encoding="utf-8-sig")
    assert [i.url for i in UrlListSource(path=lst).items()] == [
        "http://h/ok19.jpg",
        "http://h/ok20.jpg",
    ]


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_non_utf8_list_is_one_error_naming_file_and_line(tmp_path, suffix):
    """probe 1.26: a Latin-1 byte in a URL list gives one DataError with the file and line
    (not a bare UnicodeDecodeError)."""
    lst = tmp_path / f"badenc{suffix}"
    head = b"url\n" if suffix == ".csv" else b""
    lst.write_bytes(head + b"http://h/a.jpg\nhttp://h/caf\xe9.jpg\n")
    with pytest.raises(DataError) as exc:
        list(UrlListSource(path=lst).items())
    msg = str(exc.value)
    line = 3 if suffix == ".csv" else 2
    assert str(lst) in msg and f"line {line}" in msg and "0xe9" in msg and "UTF-8" in msg


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_utf16_list_with_bom_is_read(tmp_path, suffix):
    """probe 1.26: a UTF-16 list (as spreadsheet programs save "Unicode text") is read."""
    lst = tmp_path / f"utf16{suffix}"
    text = ("id,url\nx1,http://h/é.jpg\n" if suffix == ".csv" else "http://h/é.jpg\n").replace(
        "\n", "\r\n"
    )
    lst.write_bytes(text.encode("utf-16"))  # with its byte-order mark
    (item,) = UrlListSource(path=lst).items()
    assert item.url == "http://h/é.jpg"


def test_ragged_csv_row_is_one_failed_item_and_the_rest_goes_on(
    workspace, tmp_path, server, images
):
    """probe 1.29: a CSV row with more fields than the header is reported as a failed item
    naming the file and row; the valid rows before and after it are ingested."""
    a = server.route("/a.jpg", "ok", images.jpeg(64, 48, seed=1), "image/jpeg")
    b = server.route("/b.jpg", "ok", images.jpeg(64, 48, seed=2), "image/jpeg")
    lst = tmp_path / "ragged.csv"
    lst.write_text(
        f"id,url,caption\nr1,{a},one\nr2,http://h/x.jpg,a, caption, with commas\nr3,{b},x\n"
    )
    report = ingest(workspace, [UrlListSource(path=lst)], CFG)
    counts = report.sources[f"urls:{lst}"].to_dict()
    assert counts["accepted"] == 2 and counts["failed"] == {"bad_record": 1}
    kind, message = _failed(workspace)["r2"]
    assert kind == "bad_record" and f"{lst}: row 2" in message and "more field" in message
    assert server.state.hits.get("/x.jpg") is None  # nothing fetched for it


def test_folder_given_as_url_list_is_one_clear_error(tmp_path):
    """probe 1.32: `urls:DIR` says it is a folder (not IsADirectoryError)."""
    (tmp_path / "csv").mkdir()
    with pytest.raises(DataError, match=r"is a folder; give a URL list file"):
        parse_source(f"urls:{tmp_path / 'csv'}")


def test_cli_reports_a_folder_given_as_url_list(tmp_path, workspace):
    """probe 1.32 through the CLI (in this process, tests/cli_support.py): one line, exit 1."""
    (tmp_path / "csv").mkdir()
    out = cli_support.run_cli(
        "-w", workspace.root, "ingest", f"urls:{tmp_path / 'csv'}", "--no-nsfw"
    )
    assert out.returncode == 1, out.stderr
    assert "is a folder" in out.stderr and "IsADirectoryError" not in out.stderr
    assert out.stderr.startswith("error: ") and out.stderr.strip().count("\n") == 0


# ------------------------------------------------------------------------------ folders


@pytest.fixture()
def bad_folder(tmp_path, images):
    """Good images around entries that used to stop or hang the whole folder."""
    f = tmp_path / "F"
    f.mkdir()
    (f / "a.jpg").write_bytes(images.jpeg(64, 48, seed=1))
    (f / "selfloop.jpg").symlink_to("selfloop.jpg")  # 2.1
    latin1 = os.fsdecode(os.fsencode(str(f)) + b"/caf\xe9.jpg")  # 2.2: not UTF-8
    with open(latin1, "wb") as fh:
        fh.write(images.jpeg(64, 48, seed=2))
    os.mkfifo(f / "b_fifo.jpg")  # 2.12: reading it would block forever
    (f / "b_zero.jpg").symlink_to("/dev/zero")  # 2.13: reading it never ends
    (f / "c.jpg").write_bytes(images.jpeg(64, 48, seed=3))
    return f


# without the fix the FIFO blocks and /dev/zero never ends: fail then instead of hanging CI
@pytest.mark.timeout(600)
def test_bad_folder_entries_are_reported_and_never_block_the_folder(workspace, bad_folder):
    """probes 2.1, 2.2, 2.12, 2.13: a symlink loop, a non-UTF-8 name, a FIFO and a symlink to
    /dev/zero named like images: the folder is ingested, the non-UTF-8 name like any file, the
    three others are failed items naming the entry (regular files only, nothing read)."""
    report = ingest(workspace, [FolderSource(root=bad_folder)], CFG)
    counts = report.sources[f"folder:{bad_folder}"].to_dict()
    assert counts["accepted"] == 3, counts  # a, café (non-UTF-8 name), c
    accepted = {sid.rsplit("/", 1)[-1] for sid in _accepted_ids(workspace)}
    assert accepted == {"a.jpg", "caf\\xe9.jpg", "c.jpg"}  # the bad byte escaped in the id
    failed = {sid.rsplit("/", 1)[-1]: v for sid, v in _failed(workspace).items()}
    # (a followed symlink is named by its target, as for any symlink: probe 2.5)
    assert set(failed) == {"selfloop.jpg", "b_fifo.jpg", "zero"}
    assert all(kind == "io_error" for kind, _ in failed.values())
    assert "selfloop.jpg" in failed["selfloop.jpg"][1]
    assert "not a regular file" in failed["b_fifo.jpg"][1]
    assert "/dev/zero: not a regular file" in failed["zero"][1]
    # a rerun goes through the same way (io_error is retried, and fails the same)
    again = ingest(workspace, [FolderSource(root=bad_folder)], CFG)
    assert again.sources[f"folder:{bad_folder}"].to_dict()["failed"] == {"io_error": 3}


_LIST_ENTRIES = """
import json, sys
from entityseg_data.ingest.sources import FolderSource
items = FolderSource(root=sys.argv[1]).items()
print(json.dumps([[i.source_id, getattr(i, "problem", None)] for i in items]))
"""


def test_unreadable_sub_folder_is_reported(tmp_path, images):
    """probe 2.4: a sub-folder the user cannot list is a failed item naming it, not silently
    skipped (as root, run without the capabilities that bypass permissions)."""
    root = tmp_path / "F"
    (root / "locked").mkdir(parents=True)
    (root / "a.jpg").write_bytes(images.jpeg(32, 32, seed=1))
    (root / "locked" / "ok32.jpg").write_bytes(images.jpeg(32, 32, seed=2))
    os.chmod(root / "locked", 0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    try:
        out = subprocess.run(
            [*prefix, sys.executable, "-c", _LIST_ENTRIES, str(root)],
            capture_output=True,
            text=True,
        )
    finally:
        os.chmod(root / "locked", 0o755)
    assert out.returncode == 0, out.stderr
    entries = dict(json.loads(out.stdout))
    assert entries[str((root / "a.jpg").resolve())] is None
    (locked_id,) = [k for k in entries if k.endswith("/locked")]
    assert "cannot list the folder" in entries[locked_id]
    assert "Permission denied" in entries[locked_id]


def test_ragged_unsplash_row_is_one_bad_record(tmp_path):
    """probe 1.29 for the Unsplash TSV: a row with an extra (tab) field is reported, not read
    with shifted columns."""
    from entityseg_data.ingest.sources import UnsplashSource

    path = tmp_path / "photos.tsv000"
    path.write_text(
        "photo_id\tphoto_image_url\tphoto_width\tphoto_height\n"
        "a1\thttps://images.unsplash.com/a1\t4000\t3000\n"
        "b2\tdescription with a\ttab\thttps://images.unsplash.com/b2\t4000\t3000\n"
        "c3\thttps://images.unsplash.com/c3\t4000\t3000\n"
    )
    items = list(UnsplashSource(path=path).items())
    assert [(i.source_id, i.problem is None) for i in items] == [
        ("a1", True),
        ("b2", False),
        ("c3", True),
    ]
    assert f"{path}: row 2" in items[1].problem and items[1].problem_kind == "bad_record"

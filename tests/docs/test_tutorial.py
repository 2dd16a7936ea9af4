"""docs/tutorial.md is run: its ``bash`` and ``python`` blocks, in order, from an empty folder,
against the real programs (CLI, Label Studio, training).

How the blocks run:

* ``bash``: ``bash -e`` in the current folder (a ``cd`` carries over to the next block);
* ``python``: written to a file and run with this interpreter in the current folder;
* a block right after an HTML comment ``<!-- tutorial-test: ... -->`` is handled as it says:
  ``skip (reason)`` (not runnable here: a model download, the demo with its own test),
  ``file NAME`` (saved, run by a later block), ``background`` (started and left running until
  the end of the test, then stopped with SIGTERM as the tutorial says; the next block waits
  for its first line of output), ``merge-yaml PATH`` (merged into that YAML file, as the text
  asks the reader to do by hand);
* output blocks (no language) are not compared (the numbers depend on the machine and on the
  untrained models); the test checks the resulting workspace instead.

Ports: the tutorial's fixed ports (8581 for Label Studio, 8765 for the sample HTTP server) are
replaced by free ones. The Label Studio data dir is seeded from the test session's migrated
template (tests/labelstudio_support.py), which skips the first start's minute of migrations.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import dies_with_this_process

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
FENCE = re.compile(
    r"(?:<!-- tutorial-test: (?P<directive>[^>]*?) -->\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```$",
    re.S | re.M,
)


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    directive: str
    line: int


def blocks(text: str) -> list[Block]:
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("body"))
        out.append(Block(m["lang"], m["body"], (m["directive"] or "").strip(), line))
    return out


def test_block_parser():
    text = (
        "a\n```bash\nls\n```\n```\nout\n```\n<!-- tutorial-test: skip (x) -->\n"
        "```python\nprint(1)\n```\n"
    )
    found = blocks(text)
    assert [(b.lang, b.body, b.directive) for b in found] == [
        ("bash", "ls\n", ""),
        ("", "out\n", ""),
        ("python", "print(1)\n", "skip (x)"),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _seed_labelstudio(ws_dir: Path) -> None:
    from labelstudio_support import ensure_template

    template, meta = ensure_template()
    data = ws_dir / "labelstudio"
    shutil.copytree(
        template, data, ignore=shutil.ignore_patterns("template.json", "*.log"), dirs_exist_ok=True
    )
    creds = {
        "admin": {"email": meta["email"], "password": meta["password"], "token": meta["token"]}
    }
    path = data / "entityseg_credentials.json"
    path.write_text(json.dumps(creds))
    os.chmod(path, 0o600)


def test_tutorial_runs(tmp_path):
    pytest.importorskip("label_studio")
    import yaml

    env = dict(os.environ)
    env.pop("LABEL_STUDIO_API_KEY", None)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        REPO=str(ROOT),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    ports = {"8581": str(_free_port()), "8765": str(_free_port())}
    cwd = tmp_path
    background: list[subprocess.Popen] = []
    ran = []
    try:
        for k, b in enumerate(blocks(TUTORIAL.read_text())):
            where = f"docs/tutorial.md:{b.line + 1}"
            if (
                not b.lang
                or b.directive.startswith("skip")
                or b.lang not in ("bash", "python", "yaml")
            ):
                continue
            if b.directive.startswith("merge-yaml"):
                path = cwd / b.directive.split()[1]
                merged = _merge(yaml.safe_load(path.read_text()), yaml.safe_load(b.body))
                path.write_text(yaml.safe_dump(merged, sort_keys=False))
                continue
            if b.lang == "yaml":
                continue  # an illustration, not a file to write
            if b.directive.startswith("file"):
                (cwd / b.directive.split()[1]).write_text(b.body)
                continue
            body = b.body
            for old, new in ports.items():
                body = body.replace(old, new)
            if b.directive.startswith("background"):
                _seed_labelstudio(cwd / "my_set")
                proc = subprocess.Popen(
                    ["bash", "-e", "-c", f"exec {body.strip()}"],
                    cwd=cwd,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                    preexec_fn=dies_with_this_process(),  # none left if pytest is killed
                )
                background.append(proc)
                assert proc.stdout is not None
                seen = []
                for line in proc.stdout:  # "Label Studio is running at ..." once it answers
                    seen.append(line)
                    if "Label Studio is running" in line:
                        break
                assert "Label Studio is running" in "".join(seen), f"{where}: {''.join(seen)}"
                continue
            state = tmp_path / f".cwd{k}"
            if b.lang == "bash":
                cmd = ["bash", "-e", "-c", f"{body}\npwd > {state}"]
            else:
                script = tmp_path / f".block{k}.py"
                script.write_text(body)
                cmd = [sys.executable, str(script)]
            res = subprocess.run(
                cmd,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
                preexec_fn=dies_with_this_process(),
            )
            ran.append((where, res.stdout))
            assert res.returncode == 0, (
                f"{where} failed:\n{body}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
            )
            if state.exists():
                cwd = Path(state.read_text().strip())
    finally:
        for proc in background:  # the tutorial stops the server with SIGTERM (or Ctrl-C)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log = os.environ.get("ENTITYSEG_TUTORIAL_LOG")
        if log:  # the outputs, to refresh the tutorial's captured output blocks
            Path(log).write_text("".join(f"## {w}\n{out}\n" for w, out in ran))
    for proc in background:
        assert proc.returncode == 0, "annotate server did not stop cleanly on SIGTERM"

    # what the tutorial says the reader has at the end
    import entityseg_data as esd

    ws = esd.Workspace.open(cwd / "my_set")
    images = ws.images()
    assert len(images) == 6  # 3 photos + rocket + 2 scenes; copies and the small one left out
    for stage in (1, 2):
        assert len(ws.dataset(stage)) == len(images)
    assert all(all(s.names) for s in ws.dataset())  # every approved mask is named
    assert ws.predictions.versions() == {"baseline-felzenszwalb": 6, "tiny": 6}
    release = cwd / "release" / "annotations"
    assert sorted(p.name for p in release.glob("*.json")) == [
        "entityseg_train.json",
        "entityseg_train_lr.json",
        "entityseg_val.json",
        "entityseg_val_lr.json",
    ]
    assert (cwd / "runs" / "tiny" / "model" / "model.safetensors").exists()
    assert (cwd / "release_hf" / "hf").is_dir()
    # section 15: the pushes recorded rounds, the pulls simulated lead times, the report exists
    assert [r.stage for r in ws.rounds.list()] == [1, 2]
    assert all(e.lead_time_source == "simulated" for e in ws.rounds.edits())
    assert (cwd / "my_set" / "exports" / "reports" / "rounds" / "rounds.html").is_file()

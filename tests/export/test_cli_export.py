"""The export / stats commands end to end on a small converted workspace (the CLI in-process)."""

from __future__ import annotations

import json

import cli_support


def run(*args, env=None, cwd=None):
    """The CLI in this process (tests/cli_support.py)."""
    return cli_support.run_cli(*args, env={"HF_DATASETS_OFFLINE": "1", **(env or {})}, cwd=cwd)


def test_convert_stats_export_cli(syn_set, tmp_path):
    root, path, coco = syn_set
    ws = str(tmp_path / "ws")
    assert run("init", ws).returncode == 0
    out = run(
        "-w", ws, "export", "convert", "label-maps", str(root / "images"), str(root / "label_maps")
    )
    assert out.returncode == 0, out.stderr
    assert f"images: 4, entities: {len(coco['annotations'])}" in out.stdout
    st = run(
        "-w",
        ws,
        "stats",
        str(path),
        "--name",
        "json",
        "--with-workspace",
        "--no-plots",
        "--out",
        str(tmp_path / "stats"),
    )
    assert st.returncode == 0, st.stderr
    rows = json.loads((tmp_path / "stats" / "stats.json").read_text())["datasets"]
    assert [r["name"] for r in rows] == ["ws", "json"]
    # the same masks measured from the workspace and from the JSON
    for key in ("entities", "complexity", "simplicity", "valid_area"):
        assert rows[0]["table2"][key] == rows[1]["table2"][key]
    ex = run(
        "-w",
        ws,
        "export",
        "entityseg",
        "--out",
        str(tmp_path / "rel"),
        "--no-lr",
        "--set",
        "export.val_fraction=0.5",
    )
    assert ex.returncode == 0, ex.stderr
    files = sorted(p.name for p in (tmp_path / "rel" / "annotations").iterdir())
    assert files == ["entityseg_train.json", "entityseg_val.json"]
    sub = run(
        "-w",
        ws,
        "export",
        "subsets",
        "--out",
        str(tmp_path / "sub"),
        "--instance",
        "3",
        "--semantic",
        "0",
        "--panoptic",
        "0",
    )
    assert sub.returncode == 0, sub.stderr
    assert (tmp_path / "sub" / "instance.json").is_file()
    val = run("-w", ws, "data", "validate")
    assert val.returncode == 0 and "no problems found" in val.stdout
    bad = run("export", "entityseg", "--json", str(path), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--images is required" in bad.stderr

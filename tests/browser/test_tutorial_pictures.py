"""The tutorial's pictures of Label Studio are the ones the browser test takes (unit tier: reads
files only). tests/browser/test_annotate_browser.py writes each ``shot(ed, tmp_path, NAME)`` to
docs/img/NAME.jpg when run with ``ENTITYSEG_UPDATE_DOCS_IMG=1``; docs/tutorial.md must show
exactly those, and none may be missing or left over from an older test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tutorial_shows_the_pictures_the_browser_test_takes():
    test_src = (ROOT / "tests" / "browser" / "test_annotate_browser.py").read_text()
    taken = set(re.findall(r"\bshot\(\s*ed,\s*tmp_path,\s*\"([\w-]+)\"\s*\)", test_src))
    assert len(taken) >= 4, taken  # stage 1 task + edited, stage 2 names + rework
    page = (ROOT / "docs" / "tutorial.md").read_text()
    shown = set(re.findall(r"\]\(img/(tutorial_[\w-]+)\.jpg\)", page))
    assert shown == taken, (shown, taken)
    committed = {p.stem for p in (ROOT / "docs" / "img").glob("tutorial_*.jpg")}
    assert committed == taken, (committed, taken)
    for name in taken:  # JPEGs as the test writes them, small enough to commit
        data = (ROOT / "docs" / "img" / f"{name}.jpg").read_bytes()
        assert data[:3] == b"\xff\xd8\xff" and len(data) < 400_000, name

"""The apps that show users how to work (notebooks, the tutorial's Python, the demo) import the
public API and the core only, never a stage (issue 14): what they do, a user can do with
``import entityseg_data``."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = {"ingest", "annotation", "evaluation", "stats", "export", "model"}


def stage_imports(code: str) -> list[str]:
    """``entityseg_data.<stage>...`` modules imported by ``code``."""
    found = []
    for node in ast.walk(ast.parse(code)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "entityseg_data" and len(parts) > 1 and parts[1] in STAGES:
                found.append(name)
    return found


def notebook_code(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def markdown_python(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_the_checker_sees_a_stage_import():
    assert stage_imports("from entityseg_data.stats.engine import x\nimport entityseg_data") == [
        "entityseg_data.stats.engine"
    ]
    assert stage_imports("import entityseg_data.annotation.fake as f") == [
        "entityseg_data.annotation.fake"
    ]
    assert stage_imports("from entityseg_data.api.simulation import simulate_name") == []


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_notebooks_use_the_public_api(name):
    code = notebook_code(ROOT / "notebooks" / name)
    assert "import entityseg_data" in code
    assert stage_imports(code) == []


def test_tutorial_python_uses_the_public_api():
    blocks = markdown_python(ROOT / "docs" / "tutorial.md")
    assert blocks
    assert [b for b in blocks if stage_imports(b)] == []


def test_demo_uses_the_public_api():
    for path in (ROOT / "src" / "entityseg_data" / "demo").glob("*.py"):
        assert stage_imports(path.read_text()) == [], path


def test_readme_python_names_exist():
    """The README's API snippet (not run: it starts Label Studio) names only real things."""
    import entityseg_data as esd
    from entityseg_data.api.annotation import Annotation, LabelStudio
    from entityseg_data.dataset import Dataset, Sample

    (code,) = markdown_python(ROOT / "README.md")
    tree = ast.parse(code)
    owners = {
        "esd": esd,
        "ws": esd.Workspace,
        "ls": LabelStudio,
        "ann": Annotation,
        "ds": Dataset,
        "sample": Sample,
    }
    used = {
        (n.value.id, n.attr)
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }
    assert used
    missing = [f"{o}.{a}" for o, a in sorted(used) if o in owners and not hasattr(owners[o], a)]
    assert missing == []
    assert stage_imports(code) == []


def test_the_command_line_names_no_stage_module():
    """The CLI imports only the API and the core (tests/test_layering.py checks the imports);
    a stage module named in a string (importlib, lazy tables) would be a way around that."""
    pattern = re.compile(r"entityseg_data\.(" + "|".join(sorted(STAGES)) + r")\b")
    assert pattern.search('x = "entityseg_data.model.config"')  # the check sees one
    for path in sorted((ROOT / "src" / "entityseg_data" / "cli").glob("*.py")):
        found = pattern.findall(path.read_text())
        assert not found, f"{path.name} names stage modules: {found}"

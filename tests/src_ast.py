"""The parsed modules of src/entityseg_data for the static checks (``from src_ast import
parsed_src``: a module, not a conftest). Parsed once per process (~0.9 CPU s for the whole
package) and walked once (``src_nodes``, ~0.25 CPU s per walk); the trees are shared, so a check
must only read them."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from gc_support import kept_for_the_process

SRC = Path(__file__).resolve().parents[1] / "src" / "entityseg_data"


@functools.cache
def parsed_src() -> tuple[tuple[str, ast.Module], ...]:
    """(path relative to src/entityseg_data in posix form, module tree), sorted by path (the ~1M
    objects of the parsed package are kept for the process: ~1.4 CPU s of collections a worker
    without it; AST nodes form no reference cycles)."""
    with kept_for_the_process():
        return tuple(
            (
                path.relative_to(SRC).as_posix(),
                ast.parse(path.read_text(encoding="utf-8"), str(path)),
            )
            for path in sorted(SRC.rglob("*.py"))
        )


@functools.cache
def src_nodes() -> tuple[tuple[str, tuple[ast.AST, ...]], ...]:
    """(path as in :func:`parsed_src`, every node of its tree in ``ast.walk`` order)."""
    trees = parsed_src()
    with kept_for_the_process():
        return tuple((rel, tuple(ast.walk(tree))) for rel, tree in trees)

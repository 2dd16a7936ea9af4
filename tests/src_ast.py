"""The parsed modules of src/entityseg_data for the static checks (``from src_ast import
parsed_src``: a module, not a conftest). Parsed once per process (~0.9 CPU s for the whole
package) and walked once (``src_nodes``, ~0.25 CPU s per walk); the trees are shared, so a check
must only read them."""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "entityseg_data"


@contextlib.contextmanager
def _kept_for_the_process() -> Iterator[None]:
    """Build objects that live as long as the process without the cyclic collector: the ~1M
    objects of the parsed package made it run several full collections while they were built
    (each re-scanning everything built so far: ~1.4 CPU s a worker), and frozen afterwards so
    that later full collections do not scan them either. AST nodes form no reference cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@functools.cache
def parsed_src() -> tuple[tuple[str, ast.Module], ...]:
    """(path relative to src/entityseg_data in posix form, module tree), sorted by path."""
    with _kept_for_the_process():
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
    with _kept_for_the_process():
        return tuple((rel, tuple(ast.walk(tree))) for rel, tree in trees)

"""The catalog is the only place that runs SQL on the workspace catalog (issue 14): no module
outside ``entityseg_data/catalog/`` executes a statement or reaches the connection. (At 4bab1a3
ingest/pipeline.py alone ran 13 raw statements beside ``Catalog.add_image``.)"""

from __future__ import annotations

import ast
import re

from src_ast import src_nodes

# (the CLIP embedding cache moved into catalog/embeddings.py)
EXEMPT: set[str] = set()
SQL = re.compile(
    r"^\s*(SELECT\b.*\bFROM\b|INSERT (OR \w+ )?INTO\b|UPDATE \w+ SET\b|DELETE FROM\b"
    r"|(CREATE|DROP|ALTER) (TABLE|INDEX)\b|PRAGMA \w+)",
    re.S,
)
RAW = {"query", "scalar", "execute", "executemany", "executescript", "conn"}


def offenders() -> list[str]:
    out = []
    for rel, nodes in src_nodes():
        if rel.startswith("catalog/") or rel in EXEMPT:
            continue
        for node in nodes:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if SQL.search(node.value):
                    out.append(f"{rel}:{node.lineno}: SQL text {node.value[:40]!r}")
            elif isinstance(node, ast.Attribute) and node.attr in RAW:
                base = node.value
                name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                if name in ("cat", "catalog", "conn") or node.attr == "conn":
                    out.append(f"{rel}:{node.lineno}: {name}.{node.attr}")
    return out


def test_no_sql_outside_the_catalog():
    assert offenders() == []

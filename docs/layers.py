"""Draw docs/img/layers.svg from the package's import graph (tests/test_layering.py's).

    python docs/layers.py            # rewrite docs/img/layers.svg
    python docs/layers.py --check    # exit 1 when the picture is out of date

One box per top-level part of ``entityseg_data``, in its layer's band (apps, API, stages, core,
top to bottom); one line per pair of parts with at least one import between them, from the
importing part down to the imported one (grey: allowed; red, dashed: a listed violation still
being removed). Imports inside a layer are not drawn, except between stages (an arc). The layout
is computed here (no Graphviz), so the file is the same on every machine.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import defaultdict
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "layers.svg"
BANDS = (
    ("apps", "apps: command line, demo (use the API and the core)"),
    ("api", "API: entityseg_data, entityseg_data.api (composes the stages)"),
    ("stage", "stages: import the core only (and model -> evaluation)"),
    ("core", "core: imports no stage"),
)
BOX_W, BOX_H, GAP, BAND_H, MARGIN = 92, 30, 10, 120, 20
MIN_WIDTH = 900


def _layering():
    # test_layering reads the trees of tests/src_ast.py (parsed once per process, shared with
    # the other static checks when the test suite runs this)
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    spec = importlib.util.spec_from_file_location("layering", ROOT / "tests" / "test_layering.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def part_graph() -> tuple[dict[str, list[str]], set[tuple[str, str]], set[tuple[str, str]]]:
    """(layer -> parts, part edges, part edges that carry a listed violation)."""
    lay = _layering()
    parts: dict[str, set[str]] = defaultdict(set)
    edges: set[tuple[str, str]] = set()
    for mod, deps in lay.import_graph().items():
        layer, top = lay.layer_of(mod)
        parts["apps" if layer == "app" else layer].add(top or "entityseg_data")
        for dep in deps:
            _, dtop = lay.layer_of(dep)
            if (top or "entityseg_data") != (dtop or "entityseg_data"):
                edges.add((top or "entityseg_data", dtop or "entityseg_data"))
    bad = {(lay.layer_of(s)[1], lay.layer_of(d)[1]) for s, d in lay.KNOWN}
    order = {k: sorted(v) for k, v in parts.items()}
    return order, edges, bad


def render() -> str:
    parts, edges, bad = part_graph()
    width = max(MIN_WIDTH, 2 * MARGIN + max(len(v) for v in parts.values()) * (BOX_W + GAP))
    height = 2 * MARGIN + len(BANDS) * BAND_H
    pos: dict[str, tuple[float, float]] = {}
    layer_of: dict[str, str] = {}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for b, (layer, title) in enumerate(BANDS):
        y0 = MARGIN + b * BAND_H
        out.append(
            f'<rect x="{MARGIN / 2}" y="{y0}" width="{width - MARGIN}" height="{BAND_H - 12}" '
            f'fill="{("#f3f6fb", "#eef7ee", "#fdf6e8", "#f2f2f2")[b]}" stroke="#ccc"/>'
        )
        out.append(f'<text x="{MARGIN}" y="{y0 + 16}" fill="#555">{escape(title)}</text>')
        names = parts.get(layer, [])
        row_w = len(names) * (BOX_W + GAP) - GAP
        x = (width - row_w) / 2
        for name in names:
            pos[name] = (x, y0 + 50)
            layer_of[name] = layer
            x += BOX_W + GAP
    lines = []
    for src, dst in sorted(edges):
        if src not in pos or dst not in pos:
            continue
        (sx, sy), (dx, dy) = pos[src], pos[dst]
        if (src, dst) in bad:
            style = 'stroke="#d62728" stroke-dasharray="4 3" stroke-width="1.6"'
        else:
            style = 'stroke="#8a8a8a" stroke-width="0.9" stroke-opacity="0.7"'

        if layer_of[src] == layer_of[dst]:
            if layer_of[src] != "stage":
                continue
            x1, x2 = sx + BOX_W / 2, dx + BOX_W / 2
            top = sy - 26
            lines.append(
                f'<path d="M {x1:.0f} {sy:.0f} C {x1:.0f} {top:.0f}, {x2:.0f} {top:.0f}, '
                f'{x2:.0f} {dy:.0f}" fill="none" {style} marker-end="url(#arrow)"/>'
            )
            continue
        lines.append(
            f'<line x1="{sx + BOX_W / 2:.0f}" y1="{sy + BOX_H:.0f}" x2="{dx + BOX_W / 2:.0f}" '
            f'y2="{dy:.0f}" {style} marker-end="url(#arrow)"/>'
        )
    out.insert(
        2,
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#777"/></marker></defs>',
    )
    out.extend(lines)
    for name, (x, y) in pos.items():
        out.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="4" '
            'fill="white" stroke="#333"/>'
        )
        out.append(
            f'<text x="{x + BOX_W / 2:.0f}" y="{y + 19:.0f}" text-anchor="middle">'
            f"{escape(name)}</text>"
        )
    n_bad = len([e for e in edges if e in bad])
    out.append(
        f'<text x="{MARGIN}" y="{height - 6}" fill="#555">Generated by docs/layers.py from the '
        f"import graph: {len(edges)} part-to-part imports; red, dashed: {n_bad} still listed as "
        "layering violations (tests/test_layering.py KNOWN; mostly the command line's stage "
        "imports)</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    svg = render()
    if "--check" in argv:
        current = OUT.read_text() if OUT.exists() else ""
        if current != svg:
            print(f"{OUT} is out of date: run python docs/layers.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(svg)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

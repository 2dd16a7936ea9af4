"""Hand-made edit scenarios for the overlap rules: what an annotator starts from (the seed) and
what the editor returns (every region as drawn, overlaps included). test_overlap.py checks the
rules on them; run this file to draw them for docs/annotation.md::

    PYTHONPATH=src python tests/annotation/overlap_scenarios.py docs/img

writes ``docs/img/overlap_<scenario>.png``: the seed, the regions as drawn (pixels claimed
twice in black), then the result of ``intent`` (the default), ``smaller_wins`` and ``later_wins``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

H, W = 40, 60


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@dataclass(frozen=True)
class Scenario:
    """``seeds``: region id -> the mask it started from; ``drawn``: the regions in result
    order as the editor returns them; ``edit``: the pixels the annotator's tool touched."""

    name: str
    title: str
    seeds: dict[str, np.ndarray]
    drawn: list[tuple[str, np.ndarray]]
    edit: np.ndarray = field(default_factory=lambda: np.zeros((H, W), bool))


def brush_extension() -> Scenario:
    """Region A is extended with the brush into its neighbour B; B is not touched."""
    seed_a, seed_b = box(0, H, 0, 30), box(0, H, 30, W)
    stroke = box(10, 20, 25, 45)
    return Scenario(
        "brush_extension",
        "brush: A extended over its neighbour B",
        {"A": seed_a, "B": seed_b},
        [("A", seed_a | stroke), ("B", seed_b)],
        stroke,
    )


def polygon_over_pieces() -> Scenario:
    """A new polygon drawn around an over-segmented object (4 small pieces + background)."""
    pieces = [box(5, 15, 5, 15), box(5, 15, 15, 25), box(15, 25, 5, 25), box(25, 35, 40, 50)]
    bg = np.ones((H, W), bool)
    for p in pieces:
        bg &= ~p
    poly = box(4, 26, 4, 27)
    seeds = {"bg": bg, **{f"p{k}": p for k, p in enumerate(pieces)}}
    return Scenario(
        "polygon_over_pieces",
        "polygon: a new region over several pieces",
        seeds,
        [*seeds.items(), ("poly", poly)],
        poly,
    )


def eraser() -> Scenario:
    """Part of A is erased: the pixels become uncovered, nothing overlaps."""
    seed_a, seed_b = box(0, H, 0, 30), box(0, H, 30, W)
    erased = box(0, 10, 0, 10)
    return Scenario(
        "eraser",
        "eraser: part of A removed",
        {"A": seed_a, "B": seed_b},
        [("A", seed_a & ~erased), ("B", seed_b)],
        erased,
    )


def crossing_edits() -> Scenario:
    """A and B are both extended into C; their strokes cross."""
    seed_a, seed_b, seed_c = box(0, 10, 0, W), box(30, H, 0, W), box(10, 30, 0, W)
    stroke_a, stroke_b = box(5, 25, 10, 20), box(15, 35, 0, 30)
    return Scenario(
        "crossing_edits",
        "two edited regions crossing (B is later)",
        {"A": seed_a, "B": seed_b, "C": seed_c},
        [("A", seed_a | stroke_a), ("B", seed_b | stroke_b), ("C", seed_c)],
        stroke_a | stroke_b,
    )


SCENARIOS = (brush_extension, polygon_over_pieces, eraser, crossing_edits)


def render(out_dir: Path) -> list[Path]:
    """One figure per scenario in ``out_dir``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from entityseg_data.annotation.overlap import resolve
    from entityseg_data.masks import rle as rle_utils
    from entityseg_data.masks.store import Entity

    palette = np.array(
        [[31, 119, 180], [255, 127, 14], [44, 160, 44], [148, 103, 189], [140, 86, 75],
         [227, 119, 194], [188, 189, 34], [23, 190, 207]], np.uint8,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for make in SCENARIOS:
        sc = make()
        ids = list(dict.fromkeys([*sc.seeds, *(rid for rid, _ in sc.drawn)]))
        colour = {rid: palette[k % len(palette)] for k, rid in enumerate(ids)}

        def paint(
            masks: list[tuple[str, np.ndarray]],
            *,
            claims: bool = False,
            colour: dict[str, np.ndarray] = colour,
        ) -> np.ndarray:
            img = np.full((H, W, 3), 255, np.uint8)
            count = np.zeros((H, W), int)
            for rid, m in masks:
                img[m] = colour[rid]
                count += m
            if claims:
                img[count > 1] = 0
            return img

        ents = [Entity(id=rid, rle=rle_utils.encode(m.astype(np.uint8))) for rid, m in sc.drawn]
        seeds = {k: rle_utils.encode(v.astype(np.uint8)) for k, v in sc.seeds.items()}
        panels = [
            ("seed", paint(list(sc.seeds.items())), None),
            ("as drawn (black: claimed twice)", paint(sc.drawn, claims=True), sc.edit),
        ]
        for policy in ("intent", "smaller_wins", "later_wins"):
            res = resolve(ents, H, W, policy, seeds)
            masks = [(e.id, rle_utils.decode(e.segmentation).astype(bool)) for e in res.entities]
            moved = sum(m.pixels for m in res.moves)
            label = f"{policy}{' (default)' if policy == 'intent' else ''}\nmoved {moved} px"
            panels.append((label, paint(masks), None))
        fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.4))
        for ax, (label, img, edit) in zip(axes, panels):
            ax.imshow(img, interpolation="nearest")
            if edit is not None and edit.any():
                ax.contour(edit, levels=[0.5], colors="red", linewidths=1.2)
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        handles = [plt.Rectangle((0, 0), 1, 1, color=colour[rid] / 255.0, label=rid) for rid in ids]
        fig.legend(handles=handles, loc="lower center", ncol=len(ids), fontsize=7, frameon=False)
        fig.suptitle(f"{sc.title} (red outline: what the tool touched)", fontsize=9)
        fig.tight_layout(rect=(0, 0.08, 1, 0.92))
        path = out_dir / f"overlap_{sc.name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in render(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")):
        print(p)

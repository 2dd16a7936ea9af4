"""The tiled mode in the workflow: tile tasks for push, stitched submissions and per-tile rework
for pull (the geometry itself is in :mod:`.tiling`).

Push (:func:`tile_task_specs`): an image above ``annotation.tile_min_pixels`` becomes one task per
tile. Each tile's picture is cut from the served image at full resolution and written once under
``<workspace>/tiles/<image id>/`` (JPEG sources as JPEG at quality 95 without chroma
subsampling, others as PNG); its seed holds only the seeded regions it shows, cropped, ids kept.
In stage 2 an entity is named once: in its *owner* tile (the one whose core holds most of its
pixels); the other tiles show it with the grey display label ``context``. Every tile's task data
carries ``tile`` (its grid position, core and crop in image pixels), ``tiles`` (how many) and
``image_height`` / ``image_width``.

Pull (:func:`stitch_submissions`): once every tile of an image has a submission, the tiles'
masks are stitched into one full-size submission (:func:`.tiling.stitch`: ids kept, regions
drawn across a seam merged) with one :class:`~.backend.RegionInfo` per entity (stage 2: the
owner tile's name, else a name typed in another tile), and the workflow checks it like a whole
image (overlap rule and QA with the full-size seed). A rejection goes back to the tiles that
show an offending region (:func:`split_feedback`; stage 2 ``unnamed``: the owner tile), with the
tiles' own region ids.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from entityseg_data.annotation.backend import (
    Feedback,
    RegionInfo,
    Submission,
    SubmissionInfo,
    TaskSpec,
    TaskState,
)
from entityseg_data.annotation.tiling import (
    StitchResult,
    Tile,
    TilePlan,
    TilingConfig,
    crop_entities,
    owner_tiles,
    stitch,
)
from entityseg_data.annotation.workflow import CONTEXT_LABEL
from entityseg_data.errors import DataError
from entityseg_data.masks.store import ImageAnnotation
from entityseg_data.masks.types import EntityId

TILE_KEY = "tile"
TILES_DIR = "tiles"


def tile_image_relpath(image_id: int, image: str, tile: Tile) -> str:
    """Where a tile's picture is kept, relative to the workspace (the crop box in the name, so a
    different tiling never reuses a stale file)."""
    suffix = ".jpg" if PurePosixPath(image).suffix.lower() in (".jpg", ".jpeg") else ".png"
    x0, y0, x1, y1 = tile.crop
    return f"{TILES_DIR}/{int(image_id)}/{x0}_{y0}_{x1}_{y1}{suffix}"


def write_tile_images(
    root: Path, image_id: int, image: str, height: int, width: int, plan: TilePlan
) -> list[str]:
    """Cut the tiles' pictures from the served image (full resolution) and write the missing
    ones atomically; returns their paths relative to the workspace, in tile order."""
    from entityseg_data.io import atomic_open
    from entityseg_data.io.images import open_upright

    rels = [tile_image_relpath(image_id, image, t) for t in plan.tiles]
    missing = [(t, rel) for t, rel in zip(plan.tiles, rels) if not (Path(root) / rel).is_file()]
    if not missing:
        return rels
    src = open_upright(Path(root) / image, expect_hw=(height, width))
    for tile, rel in missing:
        part = src.crop(tile.crop)
        with atomic_open(Path(root) / rel, "wb") as fh:
            if rel.endswith(".jpg"):
                part.save(fh, format="JPEG", quality=95, subsampling=0)
            else:
                part.save(fh, format="PNG", compress_level=1)
    return rels


def tile_task_specs(
    *,
    root: Path,
    image_id: int,
    image: str,
    height: int,
    width: int,
    stage: int,
    annotator: str,
    seed: ImageAnnotation | None,
    seed_version: str,
    data: Mapping[str, Any],
    plan: TilePlan,
) -> list[TaskSpec]:
    """One task per tile (see the module docstring)."""
    rels = write_tile_images(root, image_id, image, height, width, plan)
    crops = crop_entities(seed.entities, plan) if seed is not None else [[] for _ in plan.tiles]
    owners = owner_tiles(seed.entities, plan) if seed is not None and stage == 2 else {}
    specs = []
    for tile, rel, part in zip(plan.tiles, rels, crops):
        tile_seed = None
        if seed is not None:
            tile_seed = replace(seed, height=tile.height, width=tile.width, entities=tuple(part))
        context = tuple(e.id for e in part if owners.get(e.id, tile.index) != tile.index)
        specs.append(
            TaskSpec(
                image_id=image_id,
                stage=stage,
                annotator=annotator,
                image=rel,
                height=tile.height,
                width=tile.width,
                seed=tile_seed,
                seed_version=seed_version,
                data={
                    **dict(data),
                    TILE_KEY: tile.to_json(),
                    "tiles": len(plan),
                    "image_height": height,
                    "image_width": width,
                },
                context=context,
            )
        )
    return specs


def tile_of(task: TaskState) -> Tile | None:
    """The tile a task shows, or None for a whole-image task."""
    raw = task.data.get(TILE_KEY)
    return Tile.from_json(raw) if raw else None


def plan_of(tasks: Sequence[TaskState]) -> tuple[TilePlan, dict[int, TaskState]]:
    """The tile plan of one image's tile tasks and tile index -> task; DataError when a tile is
    missing or repeated or the tasks disagree on the image."""
    if not tasks:
        raise DataError("no tile tasks")
    first = tasks[0].data
    try:
        h, w, n = int(first["image_height"]), int(first["image_width"]), int(first["tiles"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"task {tasks[0].id}: tile task without the image size") from None
    by_index: dict[int, TaskState] = {}
    tiles: dict[int, Tile] = {}
    for t in tasks:
        tile = tile_of(t)
        if tile is None or t.image_id != tasks[0].image_id:
            raise DataError(f"task {t.id}: not a tile of image {tasks[0].image_id}")
        if tile.index in by_index:
            raise DataError(
                f"image {t.image_id}: tile {tile.index} is in tasks {by_index[tile.index].id} "
                f"and {t.id}"
            )
        by_index[tile.index] = t
        tiles[tile.index] = tile
    if sorted(tiles) != list(range(n)):
        missing = sorted(set(range(n)) - set(tiles))
        raise DataError(f"image {tasks[0].image_id}: tile tasks {missing} are missing")
    plan = TilePlan(h, w, tuple(tiles[i] for i in range(n)))
    plan.check()
    return plan, by_index


@dataclass(frozen=True)
class TiledSubmission:
    """The stitched submission of one image and how it was stitched."""

    submission: Submission
    result: StitchResult
    owners: dict[EntityId, int]


def stitch_submissions(
    plan: TilePlan,
    subs: Mapping[int, Submission],
    seed: ImageAnnotation | None,
    *,
    image_id: int,
    stage: int,
    annotator: str,
    config: TilingConfig,
) -> TiledSubmission:
    """One full-size submission from every tile's submission (see the module docstring)."""
    missing = [t.index for t in plan.tiles if t.index not in subs]
    if missing:
        raise DataError(f"image {image_id}: tiles {missing} have no submission")
    seed_entities = seed.entities if seed is not None else ()
    result = stitch(
        plan,
        {i: s.annotation.entities for i, s in subs.items()},
        seed_entities,
        merge_fraction=config.merge_fraction,
    )
    renamed = result.ids_by_tile()
    owners = owner_tiles(result.entities, plan)
    # one RegionInfo per entity: the owner tile's (stage 2 names it there), kinds of all tiles
    infos: dict[EntityId, dict[int, RegionInfo]] = {}
    for i, sub in sorted(subs.items()):
        for r in sub.regions:
            eid = renamed.get((i, r.id), r.id)
            infos.setdefault(eid, {})[i] = r
    regions = []
    for eid, by_tile in infos.items():
        own = by_tile.get(owners.get(eid, -1))
        ordered = ([own] if own is not None else []) + [r for r in by_tile.values() if r is not own]
        named = next((r for r in ordered if r.name or r.flag), None)
        shown = next((r for r in ordered if r.label and r.label != CONTEXT_LABEL), ordered[0])
        kinds = tuple(sorted({k for r in ordered for k in r.kinds}))
        regions.append(
            RegionInfo(
                id=eid,
                name=named.name if named is not None else None,
                flag=named.flag if named is not None else None,
                kinds=kinds,
                label=shown.label,
                has_geometry=any(r.has_geometry for r in ordered),
            )
        )
    findings = []
    for i, sub in sorted(subs.items()):
        for f in sub.findings:
            region = f.get("region")
            findings.append(
                {
                    **dict(f),
                    "detail": f"tile {i}: {f.get('detail', '')}",
                    "region": renamed.get((i, str(region)), region) if region else region,
                }
            )
    infos_list = [s.info for _, s in sorted(subs.items())]
    lead = [x.lead_time for x in infos_list if x.lead_time is not None]
    info = SubmissionInfo(
        id=infos_list[0].id,
        annotator=annotator,
        updated_at=max(x.updated_at for x in infos_list),
        lead_time=sum(lead) if lead else None,
        created_at=min(x.created_at for x in infos_list),
    )
    ann = ImageAnnotation(
        image_id=image_id,
        height=plan.height,
        width=plan.width,
        stage=stage,
        annotator=annotator,
        entities=result.entities,
    )
    return TiledSubmission(
        Submission(info=info, annotation=ann, regions=tuple(regions), findings=tuple(findings)),
        result,
        owners,
    )


def split_feedback(
    feedback: Feedback,
    stitched: TiledSubmission,
    plan: TilePlan,
    *,
    unnamed: Collection[str] = (),
) -> dict[int, Feedback]:
    """Tile index -> the feedback for that tile: the offending regions it shows, under the ids
    the tile knows them by (a region in ``unnamed``: only its owner tile). A note with
    no region goes to every tile."""
    if not feedback.regions:
        return {t.index: feedback for t in plan.tiles}
    local: dict[tuple[int, EntityId], EntityId] = {}
    for (tile, rid), eid in stitched.result.ids_by_tile().items():
        local[(tile, eid)] = rid
    out: dict[int, dict[EntityId, str]] = {}
    for eid, message in feedback.regions.items():
        tiles = stitched.result.tiles_of.get(eid, ())
        if eid in unnamed and eid in stitched.owners:
            tiles = (stitched.owners[eid],)
        for t in tiles:
            out.setdefault(t, {})[local.get((t, eid), eid)] = message
    n = len(plan)
    return {
        t: Feedback(
            note=f"{feedback.note}\n(Tile {t + 1} of {n} of this image: the regions to fix here "
            "are marked; the others are in its other tiles.)",
            regions=regions,
            restore=tuple(
                local.get((t, eid), eid)
                for eid in feedback.restore
                if t in stitched.result.tiles_of.get(eid, ())
            ),
        )
        for t, regions in sorted(out.items())
    }


__all__ = [
    "TILES_DIR",
    "TILE_KEY",
    "TiledSubmission",
    "plan_of",
    "split_feedback",
    "stitch_submissions",
    "tile_image_relpath",
    "tile_of",
    "tile_task_specs",
    "write_tile_images",
]

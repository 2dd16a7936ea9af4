"""Label Studio connection and annotation-workflow settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from entityseg_data.config_fields import Checked, bounded, secret_field


@dataclass(frozen=True)
class LabelStudioConfig(Checked):
    """Where the Label Studio server is. The token is a secret: it comes from the
    ``LABEL_STUDIO_API_KEY`` environment variable or the workspace file, never from argv."""

    url: str = "http://127.0.0.1:8080"
    api_key: str = secret_field(env="LABEL_STUDIO_API_KEY")
    username: str = "admin@entityseg.local"
    password: str = secret_field(env="LABEL_STUDIO_PASSWORD")
    port: int = bounded(8080, ge=1, le=65535)
    host: str = "127.0.0.1"
    # data dir of a server started by `annotate server`, relative to the workspace
    data_dir: str = "labelstudio"
    # "" = serve images through Local Files storage (document root = the workspace); otherwise a
    # URL prefix (e.g. a static server) to which the image path relative to the workspace is added
    image_base_url: str = ""
    # Local Files document root of the server ("" = the workspace root, as `annotate server` sets)
    document_root: str = ""
    # e-mail domain of annotator accounts: annotator "alice" logs in as alice@<domain>
    email_domain: str = "entityseg.local"
    start_timeout: float = bounded(300.0, gt=0)


@dataclass(frozen=True)
class AnnotationConfig(Checked):
    """Two-stage workflow settings; ``overlap_fraction``/``overlap_images`` choose the sample
    annotated by several annotators for the consistency study (the paper: 500 images, 1.5%)."""

    annotators: tuple[str, ...] = ("annotator1",)
    overlap_annotators: int = bounded(2, ge=1)
    overlap_fraction: float = bounded(0.015, ge=0, le=1)
    overlap_images: int = bounded(500, ge=0)
    # pixels drawn by several masks: resolve them by the annotator's intent (what was painted
    # into a region relative to its seed wins; docs/annotation.md), smaller_wins, later_wins,
    # or reject the annotation
    overlap_policy: Literal["intent", "reject", "smaller_wins", "later_wins"] = "intent"
    min_mask_area: int = bounded(16, ge=0)
    stage1_project: str = "EntitySeg stage 1: entity masks"
    stage2_project: str = "EntitySeg stage 2: entity names"
    polygon_tool: bool = True
    # stage-2 '<supercategory>_other' choices
    supercategories: tuple[str, ...] = (
        "person",
        "animal",
        "vehicle",
        "furniture",
        "food",
        "plant",
        "building",
        "structure",
        "appliance",
        "electronic",
        "kitchenware",
        "accessory",
        "sports",
        "tool",
        "textile",
        "sky",
        "ground",
        "water",
        "terrain",
        "wall",
        "floor",
        "ceiling",
    )
    max_uncovered_fraction: float = bounded(
        0.2, ge=0, le=1
    )  # QA warning above this unlabelled share of the image
    model_version: str = ""  # stage-1 predictions to push ("" = the newest per image)
    vocab_mapping: str = ""  # user mapping file (raw name -> class), relative to the workspace
    push_batch: int = bounded(50, ge=1)  # tasks per import request
    # send annotations rejected by QA back to their annotator (Label Studio: the task returns to
    # their queue with the QA note and the offending regions marked)
    rework: bool = True
    # tiled mode for large images (annotation/tiling.py): an image with more pixels than
    # tile_min_pixels is annotated as tasks over overlapping tiles at full resolution (-1 = never
    # tile, 0 = tile every image); cores of at most tile_size px a side, grown by tile_margin px
    # on each side; regions drawn across a seam merge when tile_merge_fraction of the smaller
    # one's drawn pixels in the shared margin coincide
    tile_min_pixels: int = bounded(4_000_000, ge=-1)
    tile_size: int = bounded(1500, ge=64)
    tile_margin: int = bounded(64, ge=0)
    tile_merge_fraction: float = bounded(0.5, gt=0, le=1)

"""Re-apply the filters to images already in the catalog (new thresholds, prompts or probe).

Resolution and aspect use the stored upright sizes; NSFW uses the cached CLIP embeddings (only
images never embedded by this model cost a forward pass). Images whose verdicts all pass become
``accepted`` (unless they are near-duplicates of an accepted image: then ``duplicate``, with
an audit row); any reject makes them ``rejected``. Verdicts of disabled filters are removed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from entityseg_data.catalog import Catalog, ImageRecord
from entityseg_data.config.ingest import IngestConfig
from entityseg_data.errors import DataError
from entityseg_data.ingest.dedupe import PhashIndex
from entityseg_data.ingest.filters import check_aspect, check_resolution
from entityseg_data.ingest.nsfw_stage import score_nsfw
from entityseg_data.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class RefilterReport:
    """Counts after a re-filter: images per status and the status changes (``old->new``)."""

    status: Counter = field(default_factory=Counter)
    changes: Counter = field(default_factory=Counter)
    rejected_by: Counter = field(default_factory=Counter)
    nsfw_model: str | None = None

    def to_dict(self) -> dict:
        return {
            "status": dict(self.status),
            "changes": dict(self.changes),
            "rejected_by": dict(self.rejected_by),
            "nsfw_model": self.nsfw_model,
        }


def refilter(workspace: Workspace, config: IngestConfig | None = None) -> RefilterReport:
    """Recompute every filter verdict of the accepted and rejected images (see module doc)."""
    config = config or workspace.config().ingest
    report = RefilterReport()
    with workspace.catalog() as cat:
        images = [r for r in cat.images(status=None) if r.status in ("accepted", "rejected")]
        before = {r.id: r.status for r in images}
        with cat.transaction():
            for r in images:
                for v in (
                    check_resolution(r.width or 0, r.height or 0, config.min_side),
                    check_aspect(r.width or 0, r.height or 0, config.max_aspect),
                ):
                    cat.set_verdict(r.id, v.filter, v.verdict, v.reason, v.score)
            if not config.nsfw_enabled:
                cat.delete_verdicts("nsfw")
            if not config.iconic_enabled:
                cat.delete_verdicts("iconic")
        if config.iconic_enabled:
            _iconic(workspace, cat, config, images)
        if config.nsfw_enabled and images:
            report.nsfw_model, _ = score_nsfw(workspace, cat, config, images)
        rejects = cat.rejecting_filters()
        index = PhashIndex()
        for r in images:
            if before[r.id] == "accepted" and r.id not in rejects and r.phash:
                index.add(r.id, r.phash)
        with cat.transaction():
            for r in images:
                new = "rejected" if r.id in rejects else "accepted"
                for f in rejects.get(r.id, []):
                    report.rejected_by[f] += 1
                if new == "accepted" and before[r.id] == "rejected" and r.phash:
                    near = index.nearest(r.phash, config.phash_threshold)
                    if near is not None:
                        new = "duplicate"
                        cat.add_duplicate(
                            near[0],
                            r.source,
                            r.source_id,
                            "near",
                            dropped_sha256=r.sha256,
                            distance=near[1],
                        )
                    else:
                        index.add(r.id, r.phash)
                cat.set_image_status(r.id, new)
                report.status[new] += 1
                if new != before[r.id]:
                    report.changes[f"{before[r.id]}->{new}"] += 1
    return report


def _iconic(
    workspace: Workspace, cat: Catalog, config: IngestConfig, images: Sequence[ImageRecord]
) -> None:
    """Recompute the iconic verdicts from the stored files (reduced decode)."""
    import numpy as np

    from entityseg_data.ingest.filters.iconic import check_iconic
    from entityseg_data.ingest.filters.nsfw import load_image_for_clip
    from entityseg_data.ingest.normalize import reduce_upright

    for r in images:
        path = workspace.image_path(r)
        try:
            small = np.asarray(reduce_upright(load_image_for_clip(path, min_side=256)))
        except (OSError, DataError) as exc:
            log.warning("iconic: cannot read %s: %s", path, exc)
            continue
        v = check_iconic(small, config.iconic_threshold)
        cat.set_verdict(r.id, v.filter, v.verdict, v.reason, v.score)

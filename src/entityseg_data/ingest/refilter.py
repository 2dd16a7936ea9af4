"""Re-apply the filters to images already in the catalog (new thresholds, prompts or probe).

Resolution and aspect use the stored upright sizes; NSFW uses the cached CLIP embeddings (only
images never embedded by this model cost a forward pass). Images whose verdicts all pass become
``accepted`` (unless they are near-duplicates of an accepted image: then ``duplicate``, with
an audit row); any reject makes them ``rejected``. Verdicts of disabled filters are removed.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from entityseg_data.config.ingest import IngestConfig
from entityseg_data.ingest.dedupe import PhashIndex
from entityseg_data.ingest.filters import check_aspect, check_resolution
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
    from entityseg_data.ingest.nsfw_stage import score_nsfw

    config = config or workspace.config().ingest
    report = RefilterReport()
    with workspace.catalog() as cat:
        rows = cat.query(
            "SELECT id, sha256, phash, width, height, status, file_path, norm_path, source, "
            "source_id "
            "FROM images WHERE status IN ('accepted', 'rejected') ORDER BY id"
        )
        before = {int(r["id"]): r["status"] for r in rows}
        with cat.transaction() as conn:
            for r in rows:
                for v in (
                    check_resolution(r["width"], r["height"], config.min_side),
                    check_aspect(r["width"], r["height"], config.max_aspect),
                ):
                    cat.set_verdict(int(r["id"]), v.filter, v.verdict, v.reason, v.score)
            if not config.nsfw_enabled:
                conn.execute("DELETE FROM verdicts WHERE filter = 'nsfw'")
            if not config.iconic_enabled:
                conn.execute("DELETE FROM verdicts WHERE filter = 'iconic'")
        if config.iconic_enabled:
            _iconic(workspace, cat, config, rows)
        if config.nsfw_enabled and rows:
            report.nsfw_model, _ = score_nsfw(workspace, cat, config, rows)
        rejects: dict[int, list[str]] = {}
        for row in cat.query("SELECT image_id, filter FROM verdicts WHERE verdict = 'reject'"):
            rejects.setdefault(int(row["image_id"]), []).append(row["filter"])
        index = PhashIndex()
        for r in rows:
            if before[int(r["id"])] == "accepted" and int(r["id"]) not in rejects and r["phash"]:
                index.add(int(r["id"]), r["phash"])
        with cat.transaction() as conn:
            for r in rows:
                image_id = int(r["id"])
                new = "rejected" if image_id in rejects else "accepted"
                for f in rejects.get(image_id, []):
                    report.rejected_by[f] += 1
                if new == "accepted" and before[image_id] == "rejected" and r["phash"]:
                    near = index.nearest(r["phash"], config.phash_threshold)
                    if near is not None:
                        new = "duplicate"
                        conn.execute(
                            "INSERT OR REPLACE INTO duplicates(kept_image_id, dropped_source, "
                            "dropped_source_id, dropped_sha256, kind, distance) "
                            "VALUES (?,?,?,?,?,?)",
                            (near[0], r["source"], r["source_id"], r["sha256"], "near", near[1]),
                        )
                    else:
                        index.add(image_id, r["phash"])
                conn.execute("UPDATE images SET status = ? WHERE id = ?", (new, image_id))
                report.status[new] += 1
                if new != before[image_id]:
                    report.changes[f"{before[image_id]}->{new}"] += 1
    return report


def _iconic(workspace: Workspace, cat, config: IngestConfig, rows) -> None:
    """Recompute the iconic verdicts from the stored files (reduced decode)."""
    import numpy as np

    from entityseg_data.ingest.filters.iconic import check_iconic
    from entityseg_data.ingest.filters.nsfw import load_image_for_clip
    from entityseg_data.ingest.normalize import reduce_upright

    for r in rows:
        path = workspace.abspath(r["norm_path"] or r["file_path"])
        try:
            small = np.asarray(reduce_upright(load_image_for_clip(path, min_side=256)))
        except OSError as exc:
            log.warning("iconic: cannot read %s: %s", path, exc)
            continue
        v = check_iconic(small, config.iconic_threshold)
        cat.set_verdict(int(r["id"]), v.filter, v.verdict, v.reason, v.score)

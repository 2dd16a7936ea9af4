"""Where ingest puts files in a workspace (content-addressed) and the clean-up of leftovers."""

from __future__ import annotations

import time

from entityseg_data.workspace import Workspace


def image_relpath(sha256: str, ext: str, folder: str = "images") -> str:
    """Content-addressed path of an image file, relative to the workspace."""
    return f"{folder}/{sha256[:2]}/{sha256}{ext}"


def remove_stale_temp_files(ws: Workspace, min_age: float = 600.0) -> int:
    """Delete temporary files a killed run left in images/ and images_norm/ (atomic writes use
    ``.<name>.*.tmp`` siblings); only files older than ``min_age`` seconds, so a concurrent
    writer is never disturbed. Returns the number removed."""
    now = time.time()
    removed = 0
    for folder in ("images", "images_norm"):
        for path in ws.path(folder).glob("*/.*.tmp"):
            try:
                if now - path.stat().st_mtime >= min_age:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    return removed

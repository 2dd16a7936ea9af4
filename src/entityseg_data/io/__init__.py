"""Dataset I/O, the core every stage reads and writes files through.

* :mod:`entityseg_data.io.files`: atomic writes created with the user's umask (``private=True``
  for secrets: 0600), bounded reads of regular files, JSON with one clear error per bad file;
* :mod:`entityseg_data.io.images`: the one image decoder (EXIF orientation, modes, 16-bit,
  alpha over white, pixel and byte limits) used by ingest, annotation, stats, export, training
  and predict;
* :mod:`entityseg_data.io.coco`: the one strict COCO / EntitySeg / COCO panoptic reader and
  validator, returning typed records.

The file helpers are re-exported here; ``images`` and ``coco`` are imported by name (they pull
in PIL / numpy).
"""

from entityseg_data.io.files import (
    atomic_copy,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_regular_file,
    file_mode,
    json_source,
    parse_json,
    read_bytes,
    read_json,
)

__all__ = [
    "atomic_copy",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_regular_file",
    "file_mode",
    "json_source",
    "parse_json",
    "read_bytes",
    "read_json",
]

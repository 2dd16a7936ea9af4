"""The mask core: one run-length algebra, one strict RLE decoder, typed entity masks.

* :mod:`~entityseg_data.masks.runs`: counts <-> COCO string, runs, label maps, overlap policies.
* :mod:`~entityseg_data.masks.rle`: COCO RLE dicts (encode, strict decode, area, bbox, merge,
  label maps) on top of it.
* :mod:`~entityseg_data.masks.types`: :class:`Entity`, :class:`ImageMasks`, :class:`Segmenter`.
* :mod:`~entityseg_data.masks.brush`: Label Studio brush RLE codec and result builder.
* :mod:`~entityseg_data.masks.store`: per-image annotation files of a workspace.

This package is core: it imports no stage.
"""

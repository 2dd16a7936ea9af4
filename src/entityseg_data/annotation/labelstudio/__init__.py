"""The Label Studio adapter of the annotation workflow.

* :mod:`.configs`: the labeling configs of both stages (display-label palette, hotkeys, layout);
* :mod:`.format`: Label Studio JSON <-> masks (brush RLE / polygons <-> COCO RLE, names, flags);
* :mod:`.backend`: :class:`~.backend.LabelStudioBackend`, the
  :class:`~entityseg_data.annotation.backend.AnnotationBackend` over the REST API.

The REST client, the server process and the accounts (sign-up, tokens, credentials) are in
:mod:`entityseg_data.annotation.client`, :mod:`~entityseg_data.annotation.server` and
:mod:`~entityseg_data.annotation.session` (moving under this package).
"""

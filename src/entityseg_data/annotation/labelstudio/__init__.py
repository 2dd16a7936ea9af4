"""The Label Studio adapter of the annotation workflow.

* :mod:`.configs`: the labeling configs of both stages (display-label palette, hotkeys, layout);
* :mod:`.format`: Label Studio JSON <-> masks (brush RLE / polygons <-> COCO RLE, names, flags);
* :mod:`.backend`: :class:`~.backend.LabelStudioBackend`, the
  :class:`~entityseg_data.annotation.backend.AnnotationBackend` over the REST API.

* :mod:`.client`: the REST client; :mod:`.server`: the Label Studio process;
* :mod:`.accounts`: session login, tokens, sign-up, password resets, the credentials file;
* :mod:`.session`: a workspace's server, connection, team and backend
  (:func:`.session.open_backend`).
"""

"""Annotation rounds through an :class:`~entityseg_data.annotation.backend.AnnotationBackend`.

>>> ls = LabelStudio.start(ws)                   # or LabelStudio.connect(ws, url)
>>> ls.create_annotators(["alice", "bob"])
>>> ann = ws.annotation(ls)                       # or ws.annotation(InMemoryBackend())
>>> ann.push(stage=1); ...; ann.pull(stages=(1,))  # people annotate in between
>>> ls.stop()

The workflow (assignment, overlap sample, QA, rework, approval) is the same whatever the
backend: Label Studio for people, the in-memory fake for tests and scripts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entityseg_data.errors import DataError

if TYPE_CHECKING:
    from entityseg_data.annotation.backend import AnnotationBackend
    from entityseg_data.annotation.labelstudio.client import LabelStudioClient
    from entityseg_data.annotation.labelstudio.server import LabelStudioServer
    from entityseg_data.annotation.ml_backend import MLBackendServer
    from entityseg_data.annotation.pull import PullReport
    from entityseg_data.annotation.push import PushReport
    from entityseg_data.catalog import AnnotationRecord
    from entityseg_data.config import WorkspaceConfig
    from entityseg_data.masks.store import ImageAnnotation
    from entityseg_data.masks.types import ImageMasks, Segmenter
    from entityseg_data.workspace import Workspace


def as_annotation(
    masks: ImageAnnotation | ImageMasks, *, stage: int, annotator: str
) -> ImageAnnotation:
    """An annotation file record of ``masks`` (entity ids as strings, names kept)."""
    from entityseg_data.masks.store import ImageAnnotation

    if isinstance(masks, ImageAnnotation):
        return replace(masks, stage=stage, annotator=annotator)
    if masks.image_id is None:
        raise DataError("the masks to submit need an image_id")
    return ImageAnnotation(
        image_id=int(masks.image_id),
        height=masks.height,
        width=masks.width,
        stage=stage,
        annotator=annotator,
        entities=tuple(replace(e, id=str(e.id)) for e in masks.entities),
    )


class LabelStudio:
    """A Label Studio server for a workspace: started in the workspace (:meth:`start`) or an
    existing one (:meth:`connect`). Use it as a context manager, or call :meth:`stop`, to stop
    a server it started.

    ``config``: the workspace config its connection and accounts use (the ``labelstudio``
    section; default: the workspace's, read when first needed)."""

    def __init__(
        self,
        workspace: Workspace,
        client: LabelStudioClient,
        server: LabelStudioServer | None = None,
        *,
        config: WorkspaceConfig | None = None,
    ) -> None:
        self.workspace = workspace
        self.client = client
        self.server = server
        self._config = config

    @property
    def config(self) -> WorkspaceConfig:
        if self._config is None:
            self._config = self.workspace.config()
        return self._config

    @classmethod
    def start(
        cls,
        workspace: Workspace,
        *,
        port: int | None = None,
        host: str | None = None,
        die_with_parent: bool = True,
    ) -> LabelStudio:
        """Start Label Studio on ``workspace/labelstudio`` (SQLite, loopback; the first start
        of a workspace runs its migrations, about a minute). ``port`` None = the config's
        (``labelstudio.port``), 0 = a free one; ``host`` None = the config's. The admin is
        ``labelstudio.username`` with ``LABEL_STUDIO_PASSWORD`` (generated when unset); its
        token is stored in the credentials file (:attr:`credentials_path`). The server dies
        with this process unless ``die_with_parent`` is False."""
        from entityseg_data.annotation.labelstudio import session
        from entityseg_data.annotation.labelstudio.server import free_port

        server, client = session.start_local_server(
            workspace,
            port=free_port() if port == 0 else port,
            host=host,
            die_with_parent=die_with_parent,
        )
        return cls(workspace, client, server)

    @classmethod
    def connect(
        cls,
        workspace: Workspace,
        url: str | None = None,
        *,
        config: WorkspaceConfig | None = None,
        remember: bool = False,
    ) -> LabelStudio:
        """A server already running. URL: the argument, else a ``labelstudio.url`` that
        ``config`` changes from the workspace's, else the credentials file, else the config;
        the token: ``LABEL_STUDIO_API_KEY``, else the one stored for that server. ``remember``:
        record ``url`` in the credentials file first, so later connections find it. Checks
        the token (one request)."""
        from entityseg_data.annotation.labelstudio import session

        if remember and url:
            creds = session.read_credentials(workspace)
            creds["url"] = url.rstrip("/")
            session.write_credentials(workspace, creds)
        client = session.connect(
            workspace, url, labelstudio=None if config is None else config.labelstudio
        )
        client.whoami()
        return cls(workspace, client, config=config)

    @property
    def url(self) -> str:
        return str(self.client.url)

    @property
    def admin_email(self) -> str | None:
        """The e-mail of the account this handle acts as (the admin)."""
        email = self.client.whoami().get("email")
        return None if email is None else str(email)

    @property
    def credentials_path(self) -> Path:
        """The workspace's credentials file (tokens and passwords, mode 0600)."""
        from entityseg_data.annotation.labelstudio import session

        return session.credentials_path(self.workspace)

    @property
    def pid(self) -> int | None:
        """Process id of the server this handle started (None for a connected one)."""
        proc = self.server.process if self.server is not None else None
        return None if proc is None else int(proc.pid)

    def create_annotators(self, names: Iterable[str]) -> list[str]:
        """Sign the annotators up (idempotent; passwords and tokens in the credentials file)."""
        from entityseg_data.annotation.labelstudio import session

        return sorted(session.create_annotators(self.workspace, list(names), admin=self.client))

    def annotator_email(self, name: str) -> str:
        """The log-in e-mail of annotator ``name``."""
        from entityseg_data.annotation.labelstudio import session

        return session.annotator_email(self.workspace, name)

    def annotator_passwords(self, names: Iterable[str]) -> dict[str, tuple[str, str]]:
        """``{name: (e-mail, password)}`` from the credentials file (to hand them over)."""
        from entityseg_data.annotation.labelstudio import session

        return session.annotator_passwords(self.workspace, names)

    def reset_password(self, name: str, password: str | None = None) -> str:
        """Give annotator ``name`` a new password (generated unless given) in Label Studio and
        in the credentials file; returns it. Needs the admin's password (credentials file or
        ``LABEL_STUDIO_PASSWORD``)."""
        from entityseg_data.annotation.labelstudio import session

        return session.reset_password(
            self.workspace,
            name,
            admin=self.client,
            labelstudio=self.config.labelstudio,
            password=password,
        )

    def projects(self, stage: int = 1) -> dict[str, int]:
        """``{annotator: project id}`` of the stage's projects (made by the first push)."""
        from entityseg_data.annotation.push import projects_key

        with self.workspace.catalog() as cat:
            found = cat.get_kv(projects_key(stage), {}) or {}
        return {str(a): int(pid) for a, pid in found.items()}

    def register_ml_backend(self, url: str, stage: int = 1) -> dict[str, int]:
        """Connect an ML backend (e.g. :func:`start_ml_backend`'s ``url``) to every project of
        ``stage`` (idempotent); returns ``{annotator: project id}``."""
        from entityseg_data.annotation.ml_backend import register

        projects = self.projects(stage)
        for pid in projects.values():
            register(self.client, pid, url)
        return projects

    def backend(self, config: WorkspaceConfig | None = None) -> AnnotationBackend:
        """The :class:`AnnotationBackend` of this server (``labelstudio`` section of ``config``,
        default this handle's)."""
        from entityseg_data.annotation.labelstudio.session import open_backend

        cfg = config or self.config
        backend: AnnotationBackend = open_backend(
            self.workspace, self.client, labelstudio=cfg.labelstudio
        )
        return backend

    def wait(self) -> None:
        """Block until the server this handle started ends (at once for a connected one)."""
        if self.server is not None and self.server.process is not None:
            self.server.process.wait()

    def stop(self) -> None:
        """Stop the server this handle started (nothing for a connected one)."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_ml_backend(
    workspace: Workspace,
    *,
    model: str | Segmenter = "felzenszwalb",
    host: str = "127.0.0.1",
    port: int = 0,
) -> MLBackendServer:
    """Serve pre-annotations to Label Studio (its ML backend API: ``/health``, ``/setup``,
    ``/predict``) from a background thread; ``stop()`` it (or use it as a context manager).

    ``model``: ``"felzenszwalb"`` (non-learned), a CropFormer name / model folder / checkpoint
    (:func:`~entityseg_data.api.segmenters.load_segmenter`) or any
    :class:`~entityseg_data.masks.types.Segmenter`; ``port`` 0 = a free one (``url`` tells).
    Images are read from the workspace (``labelstudio.document_root``) or fetched from the
    Label Studio of the credentials file with its admin token. Loopback backends need
    ``ML_BLOCK_LOCAL_IP=false`` on the Label Studio side (:meth:`LabelStudio.start` sets it)."""
    from entityseg_data.annotation import ml_backend
    from entityseg_data.annotation.labelstudio import session

    seg: Any
    if model == "felzenszwalb":
        seg, version = ml_backend.felzenszwalb_segmenter(), "felzenszwalb"
    elif isinstance(model, str):
        from entityseg_data.api.segmenters import load_segmenter

        seg, version = load_segmenter(model), model
    else:
        seg, version = _mask_pairs(model), model.model_version
    cfg = workspace.config().labelstudio
    creds = session.read_credentials(workspace)
    token = (creds.get("admin") or {}).get("token") or cfg.api_key
    backend = ml_backend.MLBackend(
        segmenter=seg,
        model_version=version,
        document_root=cfg.document_root or workspace.root,
        ls_url=creds.get("url"),
        ls_token=token or None,
    )
    return ml_backend.MLBackendServer(backend, host=host, port=port).start()


def _mask_pairs(segmenter: Segmenter) -> Callable[[Any], list[tuple[Any, float]]]:
    """The ML backend's segmenter (image -> ``(mask, score)`` pairs, earlier masks win on
    overlaps) of a :class:`~entityseg_data.masks.types.Segmenter`, entities by descending
    score (no score: 1)."""

    def pairs(image: Any) -> list[tuple[Any, float]]:
        ents = segmenter.segment(image).entities
        scored = [(e.mask(), 1.0 if e.score is None else float(e.score)) for e in ents]
        return sorted(scored, key=lambda p: -p[1])

    return pairs


class Annotation:
    """Annotation rounds of a workspace through one backend.

    Args:
        workspace: the workspace.
        backend: an :class:`AnnotationBackend`, or a :class:`LabelStudio` handle.
        overrides: ``key=value`` config overrides for these rounds (e.g.
            ``annotation.annotators=[alice, bob]``), on top of the workspace's config.
    """

    def __init__(
        self,
        workspace: Workspace,
        backend: AnnotationBackend | LabelStudio,
        *,
        overrides: Iterable[str] = (),
    ) -> None:
        self.workspace = workspace
        self.config = workspace.config(list(overrides))
        self.labelstudio = backend if isinstance(backend, LabelStudio) else None
        self.backend: AnnotationBackend = (
            backend.backend(self.config) if isinstance(backend, LabelStudio) else backend
        )
        self._clients: dict[str, LabelStudioClient] = {}  # annotator -> their own client
        self._user_ids: dict[str, Any] = {}

    def push(
        self,
        stage: int,
        *,
        image_ids: Iterable[int] | None = None,
        limit: int | None = None,
        selection: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> PushReport:
        """Create the stage's projects and tasks for the images not pushed yet (stage 1:
        accepted images with their newest prediction as the seed; stage 2: images with
        approved stage-1 masks). A push that creates tasks records an annotation round
        (``report.round_id``). ``selection``: push exactly the images of that named selection
        (:meth:`Workspace.select`), recorded with the round."""
        from entityseg_data.annotation.push import push

        return push(
            self.workspace,
            self.backend,
            self.config.annotation,
            stage=stage,
            seed=self.config.seed,
            image_ids=image_ids,
            limit=limit,
            selection=selection,
            progress=progress,
        )

    def pull(
        self,
        stages: Sequence[int] = (1, 2),
        *,
        annotators: Iterable[str] | None = None,
        progress: Callable[[int, str, int], None] | None = None,
    ) -> dict[int, PullReport]:
        """Read the submissions, run QA, send rejected ones back for rework, approve one
        annotation per image; ``{stage: PullReport}``. Each submission's lead time, edit
        breakdown and the seed's AP^e / AR / boundary AP against it are stored for the round
        report (``ws.rounds``)."""
        from entityseg_data.annotation.pull import pull
        from entityseg_data.evaluation.rounds import seed_scores

        return pull(
            self.workspace,
            self.backend,
            self.config.annotation,
            stages=tuple(stages),
            annotators=annotators,
            progress=progress,
            measure=seed_scores,
        )

    # ------------------------------------------------------------------ state
    def tasks(self, stage: int, annotator: str) -> list[AnnotationRecord]:
        """The catalog records of the annotator's tasks of ``stage`` (image id, status...)."""
        with self.workspace.catalog() as cat:
            return [r for r in cat.annotations(stage=stage, annotator=annotator) if r.ls_task_id]

    def status(self) -> dict[tuple[int, str], Counter[str]]:
        """``{(stage, annotator): Counter(status)}`` of every annotation row."""
        out: dict[tuple[int, str], Counter[str]] = {}
        with self.workspace.catalog() as cat:
            for r in cat.annotations():
                out.setdefault((r.stage, r.annotator), Counter())[r.status] += 1
        return out

    # ------------------------------------------------------------------ acting as an annotator
    def submit(
        self,
        stage: int,
        annotator: str,
        annotation: ImageAnnotation | ImageMasks,
        *,
        skip_existing: bool = True,
        lead_time: float | None = None,
        simulated: bool = False,
    ) -> bool:
        """Submit ``annotation`` (masks; stage-2 names on its entities) for its image as
        ``annotator``, through the backend as that person would (scripts, imports, simulated
        annotators). Stage 2 names the approved stage-1 masks: keep their entity ids. Returns
        False when ``skip_existing`` and the annotator already submitted this task.

        ``lead_time``: seconds to record as the time spent (as the tool records a person's);
        ``simulated``: the submission comes from a SIMULATED annotator, so its lead time is
        labelled simulated in the catalog and in every report."""
        from entityseg_data.annotation.fake import InMemoryBackend

        ann = as_annotation(annotation, stage=stage, annotator=annotator)
        image_id = int(ann.image_id)
        if isinstance(self.backend, InMemoryBackend):
            task = self.backend.task_of(annotator, image_id, stage)
            created = not (skip_existing and annotator in task.submissions)
            if created:
                info = self.backend.submit(task.id, annotator, ann, lead_time=lead_time)
            else:
                info = task.submissions[annotator].info
            submission = info.id
        elif self.labelstudio is None:
            raise DataError(
                f"{type(self.backend).__name__}: submitting as an annotator is supported for "
                "Label Studio and the in-memory backend"
            )
        else:
            submission, created = self._submit_labelstudio(
                stage, annotator, ann, skip_existing, lead_time
            )
        if simulated:  # also a skipped one: a killed script may not have marked it
            with self.workspace.catalog() as cat:
                cat.mark_simulated(image_id, stage, annotator, submission, lead_time)
        return created

    def _submit_labelstudio(
        self,
        stage: int,
        annotator: str,
        ann: ImageAnnotation,
        skip_existing: bool,
        lead_time: float | None,
    ) -> tuple[str, bool]:
        """(annotation id, whether it was created now: False for an existing one skipped)."""
        from entityseg_data.annotation.labelstudio import session

        assert self.labelstudio is not None
        client = self._clients.get(annotator)
        if client is None:
            client = session.annotator_client(self.workspace, annotator, url=self.labelstudio.url)
            self._clients[annotator] = client
        if skip_existing:
            with self.workspace.catalog() as cat:
                row = cat.annotation(ann.image_id, stage, annotator)
            if row is not None and row.ls_task_id:
                if annotator not in self._user_ids:
                    self._user_ids[annotator] = client.whoami()["id"]
                me = self._user_ids[annotator]
                done = client.task_annotations(int(row.ls_task_id))
                mine = [a for a in done if a.get("completed_by") == me]
                if mine:
                    return str(max(int(a["id"]) for a in mine)), False
        made = session.submit_annotation(
            self.workspace,
            stage=stage,
            annotator=annotator,
            image_id=int(ann.image_id),
            annotation=ann,
            lead_time=lead_time,
            client=client,
        )
        return str(made["id"]), True

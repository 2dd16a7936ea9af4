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
from typing import TYPE_CHECKING, Any

from entityseg_data.errors import DataError

if TYPE_CHECKING:
    from entityseg_data.annotation.backend import AnnotationBackend
    from entityseg_data.annotation.labelstudio.client import LabelStudioClient
    from entityseg_data.annotation.labelstudio.server import LabelStudioServer
    from entityseg_data.annotation.pull import PullReport
    from entityseg_data.annotation.push import PushReport
    from entityseg_data.catalog import AnnotationRecord
    from entityseg_data.config import WorkspaceConfig
    from entityseg_data.masks.store import ImageAnnotation
    from entityseg_data.masks.types import ImageMasks
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
    a server it started."""

    def __init__(
        self,
        workspace: Workspace,
        client: LabelStudioClient,
        server: LabelStudioServer | None = None,
    ) -> None:
        self.workspace = workspace
        self.client = client
        self.server = server

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
        (``labelstudio.port``), 0 = a free one. The server dies with this process unless
        ``die_with_parent`` is False."""
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
    def connect(cls, workspace: Workspace, url: str | None = None) -> LabelStudio:
        """A server already running (URL from the argument, the credentials file or the
        config; the token from ``LABEL_STUDIO_API_KEY`` or the credentials file)."""
        from entityseg_data.annotation.labelstudio import session

        client = session.connect(workspace, url)
        client.whoami()
        return cls(workspace, client)

    @property
    def url(self) -> str:
        return str(self.client.url)

    @property
    def pid(self) -> int | None:
        """Process id of the server this handle started (None for a connected one)."""
        proc = self.server.process if self.server is not None else None
        return None if proc is None else int(proc.pid)

    def create_annotators(self, names: Iterable[str]) -> list[str]:
        """Sign the annotators up (idempotent; passwords and tokens in the credentials file)."""
        from entityseg_data.annotation.labelstudio import session

        return sorted(session.create_annotators(self.workspace, list(names), admin=self.client))

    def backend(self, config: WorkspaceConfig | None = None) -> AnnotationBackend:
        """The :class:`AnnotationBackend` of this server (``labelstudio`` section of ``config``,
        default the workspace's)."""
        from entityseg_data.annotation.labelstudio.session import open_backend

        cfg = config or self.workspace.config()
        backend: AnnotationBackend = open_backend(
            self.workspace, self.client, labelstudio=cfg.labelstudio
        )
        return backend

    def stop(self) -> None:
        """Stop the server this handle started (nothing for a connected one)."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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

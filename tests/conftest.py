"""Shared fixtures and the test tiers. Each area keeps its own fixtures in tests/<area>/conftest.py.

Tiers: ``unit`` (the default: no server, kernel or browser; seconds) and the opt-in tiers
``labelstudio`` (a real Label Studio), ``notebook`` (Jupyter kernels), ``browser`` (Chromium) and
``slow`` (default-size parity, training convergence, kill-and-resume, DDP, real-data checks,
process lifecycles, 12 MP round trips: tests over about a CPU second). A test belongs to an
opt-in tier through its marker (a test with several runs when any of them is selected); tests
that use the ``labelstudio`` fixture are marked automatically. ``pytest`` runs the unit tier
(``make test-unit``: ``pytest -n 2``, both cores); ``pytest --tier all`` (what ``make test`` and
CI run) runs everything; ``--tier labelstudio --tier unit`` picks tiers;
``ENTITYSEG_TEST_TIERS=all`` does the same from the environment. An explicit ``-m`` expression
selects by itself (tiers ignored).
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest
from gc_support import kept_for_the_process

# the session-scoped `labelstudio` fixture and the Label Studio template helpers
pytest_plugins = ["labelstudio_support"]

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (CI: a copy of shared/ beside the clone)
SHARED = Path(os.environ.get("ENTITYSEG_SHARED", ROOT.parent / "shared"))
ORACLE = SHARED / "oracle"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` (make test-unit): N worker processes already fill the cores; one intra-op
    # thread each instead of N x cores threads fighting over them (set before torch is imported;
    # tests that need more threads ask for them)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


OPT_IN_TIERS = ("labelstudio", "notebook", "browser", "slow")
TIERS = ("unit", *OPT_IN_TIERS)
# fixtures that put a test in a tier without a marker
_TIER_FIXTURES = {"labelstudio": "labelstudio"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        action="append",
        default=None,
        choices=(*TIERS, "all"),
        help="test tier(s) to run (repeatable): unit (default), "
        + ", ".join(OPT_IN_TIERS)
        + ", or all",
    )


def _selected_tiers(config: pytest.Config) -> set[str]:
    tiers = config.getoption("--tier")
    if not tiers:
        env = os.environ.get("ENTITYSEG_TEST_TIERS", "")
        tiers = [t.strip() for t in env.split(",") if t.strip()] or ["unit"]
    unknown = set(tiers) - {*TIERS, "all"}
    if unknown:
        raise pytest.UsageError(f"unknown test tier(s) {sorted(unknown)}; choose from {TIERS}")
    return set(TIERS) if "all" in tiers else set(tiers)


def item_tiers(item: pytest.Item) -> set[str]:
    """The opt-in tiers a test belongs to ({'unit'} when none)."""
    for fixture, tier in _TIER_FIXTURES.items():
        if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker(tier):
            item.add_marker(getattr(pytest.mark, tier))
    tiers = {t for t in OPT_IN_TIERS if item.get_closest_marker(t)}
    return tiers or {"unit"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = _selected_tiers(config)
    explicit_m = bool(config.getoption("markexpr", ""))
    keep, drop = [], []
    for item in items:
        tiers = item_tiers(item)
        (keep if explicit_m or tiers & selected else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# `pytest -n N --dist loadfile` (make test-unit) sends each file to one worker; the files of a
# group below go to one worker together, so that the heavy library they all import is imported by
# one worker instead of by each (CPU s of the import on the 2-core machine: torch._dynamo, which
# torchvision.ops, torch.utils.checkpoint and every torch.optim optimizer import, with open_clip
# ~2.3; datasets ~0.8; matplotlib ~0.5). A file missing from a group only costs its import again.
XDIST_FILE_GROUPS = {
    "torch._dynamo+open_clip": (
        "tests/model_backbones/test_checkpointing.py",
        "tests/model_backbones/test_resnet.py",
        "tests/training/test_trainer.py",
        "tests/ingest/test_clip_notice.py",
        "tests/ingest/test_nsfw.py",
        "tests/ingest/test_select_embeddings.py",
        "tests/ingest/test_cli_ingest.py",
    ),
    "datasets": ("tests/export/test_roundtrips.py", "tests/api/test_export_api.py"),
    "matplotlib": ("tests/rounds/test_rounds_fake.py", "tests/stats/test_engine.py"),
    # not an import: the parsed src/ of tests/src_ast.py (~0.9 CPU s), shared by these checks
    # (test_layers_picture runs docs/layers.py, which reads test_layering's import graph)
    "src_ast": (
        "tests/test_catalog_owns_sql.py",
        "tests/io/test_writes_go_through_io.py",
        "tests/test_layering.py",
        "tests/test_layers_picture.py",
    ),
}
_FILE_GROUP = {f: g for g, files in XDIST_FILE_GROUPS.items() for f in files}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupedFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return _FILE_GROUP.get(scope, scope)

    return GroupedFileScheduling(config, log)


def _threads_the_environment_asks_for() -> None:
    """torch's intra-op thread count back to OMP_NUM_THREADS (1 in xdist workers) when torch is
    imported and a test or a test module changed it: one leak (a module that set 2 threads at
    import) made every later test of a worker run 2 spinning threads, i.e. 4 on 2 cores."""
    torch = sys.modules.get("torch")
    want = os.environ.get("OMP_NUM_THREADS", "")
    n = int(want) if want.isdigit() else 0
    if torch is not None and n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session):
    # collection imports torch, scipy and the test modules: objects that live until the process
    # exits, which the cyclic collector scanned again and again while they were created (5 full
    # collections, ~0.4 CPU s a worker) to find next to no garbage
    with kept_for_the_process():
        yield


def pytest_collection_finish(session: pytest.Session) -> None:
    _threads_the_environment_asks_for()
    # the ~230k objects that collection leaves alive (torch's and the other imported modules',
    # the test items) live until the process exits: out of the cyclic collector's reach, so the
    # full collections that the tests' allocations trigger stop re-scanning them (~0.5 CPU s a
    # worker) and so does the final collection at interpreter exit
    gc.freeze()
    _MODULES_AT_LAST_FREEZE[0] = len(sys.modules)
    # young collections every 10,000 net allocations instead of 700: the tests' short-lived
    # containers (masks, records, tensors' wrappers) are mostly freed by reference counting
    # before a collection sees them; ~2,000 -> ~100 young and ~10 -> 0 full collections a
    # worker (0.1-0.65 CPU s a worker), the same peak memory
    gc.set_threshold(10_000, 10, 10)


def pytest_unconfigure(config: pytest.Config) -> None:
    # the same at exit for what the tests imported and left alive (open_clip, datasets, ...):
    # the interpreter's final collection skips frozen objects (~1 CPU s a worker with torch)
    gc.freeze()


_MODULES_AT_LAST_FREEZE = [0]


def _freeze_after_heavy_imports() -> None:
    """A test that imported a heavy library (open_clip, datasets, torch._dynamo: hundreds of
    modules) leaves its objects alive until exit, like collection's: frozen, so that later full
    collections stop re-scanning them."""
    if len(sys.modules) - _MODULES_AT_LAST_FREEZE[0] >= 100:
        gc.freeze()
        _MODULES_AT_LAST_FREEZE[0] = len(sys.modules)


@pytest.fixture(autouse=True)
def _torch_threads_as_the_environment_asks():
    yield
    _threads_the_environment_asks_for()
    _freeze_after_heavy_imports()


@pytest.fixture(scope="session")
def oracle_dir() -> Path:
    if not ORACLE.exists():
        pytest.skip(f"oracle fixtures not found at {ORACLE}")
    return ORACLE


@pytest.fixture()
def workspace(tmp_path):
    from entityseg_data.workspace import Workspace

    return Workspace.create(tmp_path / "ws")

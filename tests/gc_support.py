"""The cyclic collector around objects that live as long as the test process."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def kept_for_the_process() -> Iterator[None]:
    """Build long-lived objects (imports, collected items, parsed modules) without the cyclic
    collector, which would otherwise run full collections while they are built, each re-scanning
    everything built so far to find next to no garbage; they are frozen afterwards, so later
    full collections do not scan them either."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()

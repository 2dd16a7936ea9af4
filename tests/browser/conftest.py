"""Browser-tier fixtures: Debian's Chromium driven by the ``playwright`` package.

The browser is the system's (``/usr/bin/chromium``; ``$ENTITYSEG_CHROMIUM`` overrides), launched
with ``executable_path``: Playwright's own browser download is never used. Without the package or
the browser the tests are skipped with the reason (``make setup`` installs Chromium where
apt-get works). The ``chromium_browser`` fixture is listed before ``labelstudio`` in the tests'
arguments, so a machine without a browser skips before a server is started.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lsui import chromium_executable, launch, missing_browser_reason


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Any]:
    """One headless Chromium for the session (closed at the end)."""
    reason = missing_browser_reason()
    if reason is not None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, str(chromium_executable()))
        try:
            yield browser
        finally:
            browser.close()

"""The Label Studio SDK's brush codec (label_studio_sdk/converter/brush.py), the reference our
vectorised codec is compared with, loaded from its own file: importing it as
``label_studio_sdk.converter.brush`` first runs ``label_studio_sdk.converter``'s ``__init__``,
which imports the whole converter with nltk and scipy.stats (about 2 CPU s in every pytest process
or xdist worker that touches it). brush.py itself imports only numpy, PIL and, lazily, cv2.
``from sdk_brush_support import sdk_brush``: a module, not a conftest (any folder can use it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_NAME = "_label_studio_sdk_converter_brush"


def sdk_brush() -> ModuleType:
    """The SDK's brush module (skips the test when label_studio_sdk is not installed)."""
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    if "label_studio_sdk.converter.brush" in sys.modules:  # already imported the usual way
        return sys.modules["label_studio_sdk.converter.brush"]
    spec = importlib.util.find_spec("label_studio_sdk")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("label_studio_sdk is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "converter" / "brush.py"
    if not path.is_file():
        pytest.skip(f"label_studio_sdk has no {path}")
    file_spec = importlib.util.spec_from_file_location(_NAME, path)
    assert file_spec is not None and file_spec.loader is not None
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[_NAME] = module
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_NAME]
        raise
    return module

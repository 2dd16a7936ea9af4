"""Official detectron2 checkpoints -> our state_dict, with every key accounted for.

Reading (:func:`read_source`):

* ``.pth`` / ``.pt`` / ``.bin``: ``torch.load(map_location="cpu", weights_only=True)``; a file that
  needs arbitrary unpickling is refused unless ``trust_pickle=True``;
* ``.pkl``: detectron2's numpy-array pickles, read with a restricted unpickler that only
  reconstructs numpy arrays, dtypes and plain containers (safe); anything else needs
  ``trust_pickle=True``;
* ``.npz``: ``numpy.load(allow_pickle=False)``.

Either ``{"model": state_dict, ...}`` (detectron2) or a bare state_dict is accepted.

Key rules, in order (:func:`convert_mapping`): strip a common ``module.`` prefix; rename
``static_query`` -> ``query_feat`` (pre-v2 checkpoints); drop the keys matched by
:data:`DROPPED_KEYS` (loss-only or non-persistent tensors); run the backbone's
``checkpoint_filter`` (Swin: fill / verify ``relative_position_index``, drop ``attn_mask``); cast
floating tensors to float32. The result must then contain exactly the model's keys with the
model's shapes; otherwise one :class:`CheckpointError` names the first mismatching key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from entityseg_data.config import from_dict, to_dict
from entityseg_data.errors import CheckpointError, ConfigError
from entityseg_data.io import atomic_write_json
from entityseg_data.model.config import ModelConfig

log = logging.getLogger(__name__)

#: source keys that are dropped on purpose (regex, reason)
DROPPED_KEYS: tuple[tuple[str, str], ...] = (
    (r"^criterion(_2d|_3d)?\.empty_weight$", "loss-only no-object class weight"),
    (r"^pixel_(mean|std)$", "normalisation constants (outside the model here)"),
)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
REPORT_FILE = "conversion_report.json"
FORMAT = "entityseg-data/model"
FORMAT_VERSION = 1

_SAFE_PICKLE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Reconstructs numpy arrays and plain containers only (detectron2 ``.pkl`` files)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unsafe_hint(path: Path, exc: Exception | str) -> CheckpointError:
    return CheckpointError(
        f"{path}: the file contains Python objects that safe loading refuses ({exc}). Unpickling "
        f"can run arbitrary code; if you trust the file's origin, pass --trust-pickle "
        f"(trust_pickle=True)"
    )


def read_source(path: str | Path, *, trust_pickle: bool = False) -> tuple[dict[str, Any], str]:
    """Read a checkpoint file into a flat ``{key: tensor or array}`` mapping.

    Returns (mapping, format) with format "pth", "pkl" or "npz". Raises CheckpointError for a
    missing, truncated, unsafe (without ``trust_pickle``) or non-checkpoint file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        fmt = "npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                obj: Any = {k: z[k] for k in z.files}
        except ValueError as exc:  # object arrays need pickle
            raise _unsafe_hint(path, exc) from None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise CheckpointError(
                f"{path}: not a readable .npz file (truncated or not a checkpoint): {exc}"
            ) from None
    elif suffix == ".pkl":
        fmt = "pkl"
        try:
            with open(path, "rb") as f:
                if trust_pickle:
                    obj = pickle.load(f)
                else:
                    obj = _NumpyOnlyUnpickler(f).load()
        except pickle.UnpicklingError as exc:
            if "refusing to load global" in str(exc):
                raise _unsafe_hint(path, exc) from None
            raise CheckpointError(
                f"{path}: not a readable pickle (truncated or not a checkpoint): {exc}"
            ) from None
        except (EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
            raise CheckpointError(
                f"{path}: not a readable pickle (truncated or not a checkpoint): {exc}"
            ) from None
    else:
        fmt = "pth"
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            garbage = "Unsupported operand" in str(exc)  # bytes that are no pickle at all
            if (
                "Weights only load failed" in str(exc)
                and not garbage
                and not _looks_truncated(path)
            ):
                if not trust_pickle:
                    raise _unsafe_hint(path, _first_line(exc)) from None
                try:
                    obj = torch.load(path, map_location="cpu", weights_only=False)
                except Exception as exc2:
                    raise CheckpointError(f"{path}: cannot be read: {exc2}") from None
            else:
                raise CheckpointError(
                    f"{path}: not a readable torch checkpoint (truncated or not a checkpoint): "
                    f"{_first_line(exc)}"
                ) from None
        except (
            RuntimeError,
            EOFError,
            OSError,
            ValueError,
            KeyError,
            IndexError,
            TypeError,
        ) as exc:
            # (a text file read as a legacy pickle fails with KeyError: probe 7.4)
            raise CheckpointError(
                f"{path}: not a readable torch checkpoint (truncated or not a checkpoint): "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from None
    return _flatten_container(obj, path), fmt


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _looks_truncated(path: Path) -> bool:
    """A torch zip checkpoint whose central directory is unreadable."""
    if zipfile.is_zipfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04"


def _flatten_container(obj: Any, path: Path) -> dict[str, Any]:
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{path}: not a checkpoint: expected a state_dict or a dict with a 'model' state_dict"
        )
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: not a checkpoint: key {key!r} is not a string")
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise CheckpointError(
                f"{path}: not a checkpoint: entry {key!r} is a {type(value).__name__}, not a "
                f"tensor or array"
            )
        out[key] = value
    return out


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    return value


def check_state_dict(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, source: str
) -> None:
    """Raise one CheckpointError naming the first shape mismatch, missing or unexpected key."""
    for key, value in state.items():
        if key in target and tuple(value.shape) != tuple(target[key].shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(target[key].shape)} in the model (wrong preset or config?)"
            )
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} model keys missing from the checkpoint, first {missing[0]} "
                f"{tuple(target[missing[0]].shape)}"
            )
        if unexpected:
            parts.append(
                f"{len(unexpected)} checkpoint keys unknown to the model, first {unexpected[0]} "
                f"{tuple(state[unexpected[0]].shape)}"
            )
        hint = ""
        if any(".make_3d." in k for k in unexpected):
            hint = " (a CropFormer checkpoint: use a cropformer_* preset)"
        elif any(".make_3d." in k for k in missing):
            hint = " (a Mask2Former checkpoint: use a mask2former_* preset)"
        raise CheckpointError(f"{source}: weights do not match the model: {'; '.join(parts)}{hint}")


def check_finite(state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Raise one CheckpointError when floating weights hold NaN or infinite values (a corrupt
    file or a diverged training run: such a model predicts nothing, silently). Meta tensors
    (shape-only checks) are skipped."""
    bad: list[tuple[str, int, int]] = []
    for key, value in state.items():
        if value.is_meta or not value.is_floating_point():
            continue
        n = int(value.numel() - torch.isfinite(value).sum())
        if n:
            bad.append((key, n, value.numel()))
    if bad:
        key, n, total = bad[0]
        raise CheckpointError(
            f"{source}: {len(bad)} weight tensor(s) hold NaN or infinite values, first {key} "
            f"({n} of {total} values); the checkpoint is corrupt or its training diverged"
        )


def convert_mapping(
    raw: Mapping[str, Any], cfg: ModelConfig, *, source: str = "<state_dict>"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Apply the key rules to ``raw`` and check it against the model built from ``cfg``.

    Works with meta tensors (shape-only checks). Returns (state_dict, report) where report holds
    ``consumed``, ``dropped``, ``renamed``, ``filled``, ``missing`` (always empty on success),
    ``unexpected`` (idem) and ``num_parameters``.
    """
    from entityseg_data.model.loading import build_model

    keys = list(raw)
    renamed: dict[str, str] = {}
    if keys and all(k.startswith("module.") for k in keys):
        renamed.update({k: k[len("module.") :] for k in keys})
    state: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key in keys:
        new = renamed.get(key, key)
        if new.endswith("predictor.static_query.weight"):
            new = new.replace("static_query", "query_feat")
            renamed[key] = new
        if any(re.search(pat, new) for pat, _ in DROPPED_KEYS):
            dropped.append(key)
            continue
        if new in state:
            raise CheckpointError(f"{source}: two entries map to {new}")
        state[new] = _as_tensor(raw[key])
    model = build_model(cfg, device="meta")
    target = model.state_dict()
    before = set(state)
    filt = getattr(model.backbone, "checkpoint_filter", None)
    if filt is not None:
        state = filt(state, prefix="backbone.")
    filled = sorted(set(state) - before)
    dropped += sorted(before - set(state))
    check_state_dict(state, target, source=source)
    casts = 0
    for key, value in state.items():
        want = target[key].dtype
        if value.dtype != want:
            if value.is_floating_point() != want.is_floating_point:
                raise CheckpointError(
                    f"{source}: {key} has dtype {value.dtype}, the model expects {want}"
                )
            state[key] = value.to(want)
            casts += 1
    check_finite(state, source=source)
    n_params = sum(p.numel() for p in model.parameters())
    report = {
        "architecture": cfg.architecture,
        "num_source_keys": len(keys),
        "num_tensors": len(state),
        "num_parameters": n_params,
        "consumed": len(keys) - len(dropped),
        "dropped": {k: _drop_reason(renamed.get(k, k)) for k in dropped},
        "renamed": {k: v for k, v in renamed.items() if k != v},
        "filled": filled,
        "dtype_casts": casts,
        "missing": [],
        "unexpected": [],
    }
    return state, report


def _drop_reason(key: str) -> str:
    for pat, reason in DROPPED_KEYS:
        if re.search(pat, key):
            return reason
    return "removed by the backbone checkpoint filter"


def convert_state_dict(
    path: str | Path, cfg: ModelConfig, *, trust_pickle: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an official checkpoint file and convert it (see :func:`convert_mapping`)."""
    path = Path(path)
    raw, fmt = read_source(path, trust_pickle=trust_pickle)
    state, report = convert_mapping(raw, cfg, source=str(path))
    report = {
        "source": str(path),
        "source_format": fmt,
        "source_sha256": sha256_file(path),
        **report,
    }
    return state, report


def resolve_config(
    *, preset: str | None = None, config: ModelConfig | str | Path | None = None
) -> ModelConfig:
    """The ModelConfig named by exactly one of ``preset`` / ``config`` (a ModelConfig, an official
    detectron2 YAML, or our ``config.json``)."""
    from entityseg_data.model.presets import get_preset

    if (preset is None) == (config is None):
        raise ConfigError("give exactly one of a preset name or a config (official YAML)")
    if preset is not None:
        return get_preset(preset)
    if isinstance(config, ModelConfig):
        return config
    assert config is not None  # exactly one of preset / config (checked above)
    cpath = Path(config)
    if cpath.suffix.lower() == ".json":
        return read_config_json(cpath)
    from entityseg_data.model.yaml_config import config_from_yaml

    return config_from_yaml(cpath)


def read_config_json(path: Path) -> ModelConfig:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the model config: {exc}") from None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        data = data.get("model")
    try:
        return from_dict(ModelConfig, data, prefix="model")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from None


def write_converted(
    out_dir: str | Path,
    state: Mapping[str, torch.Tensor],
    cfg: ModelConfig,
    report: Mapping[str, Any],
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``conversion_report.json`` into
    ``out_dir``. Files are written in a temporary folder and moved in place (the report last)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(
            {k: v.detach().contiguous() for k, v in state.items()},
            str(tmp / WEIGHTS_FILE),
            metadata={"format": FORMAT, "version": str(FORMAT_VERSION)},
        )
        atomic_write_json(
            tmp / CONFIG_FILE,
            {"format": FORMAT, "version": FORMAT_VERSION, "model": to_dict(cfg)},
            indent=2,
        )
        atomic_write_json(tmp / REPORT_FILE, dict(report), indent=2)
        out.mkdir(exist_ok=True)
        for name in (WEIGHTS_FILE, CONFIG_FILE, REPORT_FILE):
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %s (%d tensors)", out, len(state))
    return out


def read_converted(
    folder: str | Path,
) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    """(state_dict, config, report) of a folder written by :func:`write_converted`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: not a converted model folder (no {name})")
    cfg = read_config_json(folder / CONFIG_FILE)
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: cannot read: {exc}") from None
    report: dict[str, Any] = {}
    if (folder / REPORT_FILE).is_file():
        try:
            report = json.loads((folder / REPORT_FILE).read_text())
        except ValueError:
            report = {}
    return state, cfg, report


def convert_file(
    src: str | Path,
    out_dir: str | Path,
    *,
    preset: str | None = None,
    config: ModelConfig | str | Path | None = None,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """Convert an official checkpoint into a folder; returns the report."""
    cfg = resolve_config(preset=preset, config=config)
    state, report = convert_state_dict(src, cfg, trust_pickle=trust_pickle)
    report = {"preset": preset, "config": None if preset else str(config), **report}
    write_converted(out_dir, state, cfg, report)
    return report


__all__ = [
    "DROPPED_KEYS",
    "check_finite",
    "check_state_dict",
    "convert_file",
    "convert_mapping",
    "convert_state_dict",
    "read_converted",
    "read_source",
    "resolve_config",
    "write_converted",
]

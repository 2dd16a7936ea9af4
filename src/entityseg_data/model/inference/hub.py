"""Model names -> official checkpoint files on the Hugging Face hub -> converted, cached folders.

The released CropFormer / Mask2Former weights live in the (gated) dataset repo
``qqlu1992/Adobe_EntitySeg``, folder ``CropFormer_model/Entity_Segmentation/<Folder>/``
(REFERENCE.md 4.1). :func:`resolve_model` downloads a file once through ``huggingface_hub`` (its
cache, ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE`` all apply), converts it once with the
model's converter into ``<cache>/<name>/`` (``model.safetensors`` + ``config.json``) and returns
that folder. The official weights are CC BY-NC 4.0: the notice is logged the first time a model is
fetched. Offline, gated or unreachable access raises one :class:`OfflineError` saying how to pass
a local file instead.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from entityseg_data.errors import CheckpointError, ConfigError, OfflineError
from entityseg_data.io import atomic_write_text

log = logging.getLogger(__name__)

REPO_ID = "qqlu1992/Adobe_EntitySeg"
REPO_TYPE = "dataset"
HUB_FOLDER = "CropFormer_model/Entity_Segmentation"

#: preset name -> (hub folder, file name)   (REFERENCE.md 4.1)
OFFICIAL_FILES: dict[str, tuple[str, str]] = {
    "mask2former_swin_tiny_3x": ("Mask2Former_swin_tiny_3x", "Mask2Former_swin_tiny_3x_3cacfb.pth"),
    "cropformer_swin_tiny_3x": ("CropFormer_swin_tiny_3x", "CropFormer_swin_tiny_3x_5cea5e.pth"),
    "mask2former_swin_large_3x": (
        "Mask2Former_swin_large_w7_3x",
        "Mask2Former_swin_large_w7_3x_dd4543.pth",
    ),
    "cropformer_swin_large_3x": (
        "CropFormer_swin_large_w7_3x",
        "CropFormer_swin_large_w7_3x_6843ef.pth",
    ),
    "mask2former_hornet_3x": ("Mask2Former_hornet_3x", "Mask2Former_hornet_3x_576d0b.pth"),
    "cropformer_hornet_3x": ("CropFormer_hornet_3x", "CropFormer_hornet_3x_03823a.pth"),
}

LICENSE_NOTICE = (
    "The official CropFormer/Mask2Former EntitySeg weights ({name}) are licensed CC BY-NC 4.0 "
    "(non-commercial use only; https://creativecommons.org/licenses/by-nc/4.0/). By using them "
    "you accept those terms. Source: huggingface.co/datasets/{repo}."
)
_NOTICE_FILE = "LICENSE_NOTICE"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Folder of converted models: ``cache_dir``, ``$ENTITYSEG_MODEL_CACHE``, or
    ``~/.cache/entityseg-data/models``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("ENTITYSEG_MODEL_CACHE")
    if env:
        return Path(env)
    return (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "entityseg-data"
        / ("models")
    )


Files = dict[str, tuple[str, str]]


def hub_filename(name: str, files: Files | None = None) -> str:
    folder, file = (files or OFFICIAL_FILES)[name]
    return f"{HUB_FOLDER}/{folder}/{file}"


def canonical_name(name: str, mode: str | None = None, files: Files | None = None) -> str | None:
    """Released preset name for ``name`` (case-insensitive; official folder/file names and bare
    backbone names such as ``hornet_3x`` with ``mode`` are accepted), or None."""
    key = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    key = re.sub(r"_[0-9a-f]{6}$", "", re.sub(r"_pth$|_pkl$", "", key))
    key = key.replace("_w7", "")
    files = files or OFFICIAL_FILES
    if key in files:
        family = key.startswith(("cropformer", "mask2former"))
        if mode is not None and family and not key.startswith(mode):
            raise ConfigError(f"model {name!r} is not a {mode} model")
        return key
    if mode is not None and f"{mode}_{key}" in files:
        return f"{mode}_{key}"
    if mode is None and f"cropformer_{key}" in files:
        return f"cropformer_{key}"
    return None


def guess_preset(path: str | Path) -> str | None:
    """The preset of an official checkpoint from its file name (e.g. ``CropFormer_hornet_3x_03823a
    .pth`` -> ``cropformer_hornet_3x``), or None."""
    return canonical_name(Path(path).stem)


def resolve_model(
    name_or_path: str | Path,
    *,
    mode: str | None = None,
    preset: str | None = None,
    config: Any = None,
    cache_dir: str | Path | None = None,
    files: Files | None = None,
) -> tuple[Path, str | None]:
    """``(path, preset)`` to hand to ``load_checkpoint``.

    An existing folder is a converted model; an existing file is an official checkpoint (its
    preset from ``preset``, ``config`` or the file name); anything else is a released model
    name, fetched from the hub and converted once.
    """
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir():
        return path, preset
    if path.is_file():
        if preset is None and config is None:
            preset = guess_preset(path)
            if preset is None:
                raise ConfigError(
                    f"{path}: cannot tell the architecture from the file name; pass the model "
                    f"preset (--model NAME / preset=...) or a config (config=...)"
                )
        return path, preset
    name = canonical_name(str(name_or_path), mode, files)
    if name is None:
        looks_like_path = any(c in str(name_or_path) for c in "/\\") or path.suffix
        if looks_like_path:
            raise CheckpointError(f"{name_or_path}: no such file or folder")
        raise ConfigError(
            f"unknown model {name_or_path!r}; released models: "
            f"{', '.join(files or OFFICIAL_FILES)} "
            f"(or pass a checkpoint file / converted folder)"
        )
    return fetch_converted(name, cache_dir=cache_dir, files=files), name


def fetch_converted(
    name: str, *, cache_dir: str | Path | None = None, files: Files | None = None
) -> Path:
    """The converted folder of released model ``name``, downloading and converting on first use."""
    from entityseg_data.model.convert import convert_file

    out = cache_root(cache_dir) / name
    if (out / "model.safetensors").is_file() and (out / "config.json").is_file():
        return out
    src = download_official(name, files=files)
    _show_notice(name, out.parent)
    log.info("converting %s -> %s (once)", src, out)
    convert_file(src, out, preset=name)
    return out


def _show_notice(name: str, root: Path) -> None:
    marker = root / f"{name}.{_NOTICE_FILE}"
    if marker.exists():
        return
    log.warning(LICENSE_NOTICE.format(name=name, repo=REPO_ID))
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, LICENSE_NOTICE.format(name=name, repo=REPO_ID) + "\n")


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """A TCP connection to the hub opens within ``timeout`` (so an offline machine fails in
    seconds instead of waiting for HTTP retries)."""
    u = urlparse(endpoint)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(name: str, why: str, files: Files | None = None) -> str:
    folder, file = (files or OFFICIAL_FILES)[name]
    return (
        f"cannot get the weights of {name!r} from the Hugging Face hub ({why}). Download "
        f"{HUB_FOLDER}/{folder}/{file} from https://huggingface.co/datasets/{REPO_ID} (a gated "
        f"repo: accept its terms and log in with `hf auth login` or set HF_TOKEN), then pass the "
        f"local file: `--weights {file}` (CLI) or EntitySegmenter.from_pretrained('{file}')"
    )


def download_official(name: str, *, files: Files | None = None) -> Path:
    """Local path of the official checkpoint of ``name`` (from the huggingface_hub cache, or
    downloaded). Raises OfflineError with instructions when it cannot be had."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    filename = hub_filename(name, files)
    endpoint = _endpoint()

    def fail(why: str) -> OfflineError:
        return OfflineError(_offline_message(name, why, files))

    try:
        return Path(
            hf_hub_download(
                REPO_ID, filename, repo_type=REPO_TYPE, local_files_only=True, endpoint=endpoint
            )
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise fail("HF_HUB_OFFLINE is set and the file is not cached")
    if not _reachable(endpoint):
        raise fail(f"{endpoint} is not reachable")
    try:
        return Path(
            hf_hub_download(
                REPO_ID, filename, repo_type=REPO_TYPE, etag_timeout=10, endpoint=endpoint
            )
        )
    except GatedRepoError:
        raise fail("the repo is gated and access was refused") from None
    except RepositoryNotFoundError:
        raise fail("repo not found or access refused") from None
    except LocalEntryNotFoundError as exc:
        raise fail(f"not reachable: {_first(exc)}") from None
    except HfHubHTTPError as exc:
        code = getattr(getattr(exc, "response", None), "status_code", "?")
        raise fail(f"HTTP {code}") from None
    except OSError as exc:
        raise fail(f"network error: {_first(exc)}") from None


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

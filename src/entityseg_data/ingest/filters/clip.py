"""open_clip model loading with offline-safe weight resolution.

``clip_model`` is an open_clip model name (``ViT-B-32``) or ``local-dir:DIR`` (a folder with
``open_clip_config.json`` + ``open_clip_model.safetensors``; weights come from the folder).
``clip_pretrained`` is a pretrained tag (``laion2b_s34b_b79k``), a local weights file, or empty
for an untrained model (only with ``allow_random_clip``: the scores are then meaningless).

A tag is looked up in the local Hugging Face / open_clip caches first; when it is not cached and
the hub is unreachable (or ``HF_HUB_OFFLINE=1``) loading fails at once with an
:class:`~entityseg_data.errors.OfflineError` saying how to provide the weights, instead of
huggingface_hub's ~47 s of retries.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entityseg_data.catalog.embeddings import RANDOM_TAGS, cache_key
from entityseg_data.errors import ConfigError, OfflineError

log = logging.getLogger(__name__)

HUB_HOST = ("huggingface.co", 443)


@dataclass
class ClipModel:
    """A loaded CLIP: ``model`` (eval mode), image ``preprocess``, ``tokenizer`` and a ``key``
    naming model + weights (the embedding-cache key). ``random`` marks untrained weights."""

    model: Any
    preprocess: Any
    tokenizer: Any
    key: str
    random: bool
    device: str


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _cached_weights(cfg: dict[str, Any]) -> str | None:
    """A local file for an open_clip pretrained config, if one is already cached."""
    if cfg.get("file"):
        return str(cfg["file"])
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        safe = re.sub(r"\.(bin|pt|pth)$", ".safetensors", filename)
        for candidate in dict.fromkeys((safe, filename)):
            found = try_to_load_from_cache(repo, candidate)
            if isinstance(found, str) and os.path.exists(found):
                return found
    url = cfg.get("url", "")
    if url:
        local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if local.exists():
            return str(local)
    return None


def resolve_pretrained(model_name: str, pretrained: str, *, allow_random: bool) -> str | None:
    """What to pass as ``pretrained`` to open_clip: a local file, a tag to download (only when
    the hub is reachable), or None for random weights. Raises ConfigError / OfflineError."""
    if model_name.startswith("local-dir:"):
        folder = Path(model_name[len("local-dir:") :])
        if not (folder / "open_clip_config.json").is_file():
            raise ConfigError(f"{folder}: no open_clip_config.json (ingest.clip_model=local-dir:)")
        weights = [p for ext in ("*.safetensors", "*.bin", "*.pth") for p in folder.glob(ext)]
        if not weights and not allow_random:
            raise ConfigError(
                f"{folder}: no weights file (open_clip_model.safetensors) beside the config; "
                f"set ingest.allow_random_clip=true to use an untrained model"
            )
        return None
    tag = (pretrained or "").strip()
    if tag.lower() in RANDOM_TAGS:
        if not allow_random:
            raise ConfigError(
                "ingest.clip_pretrained is empty: set it to a pretrained tag or a local weights "
                "file, or set ingest.allow_random_clip=true for demos/tests (untrained CLIP "
                "scores are meaningless)"
            )
        return None
    if os.path.isfile(tag):
        return tag
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(model_name, tag)
    if not cfg:
        tags = oc_pretrained.list_pretrained_tags_by_model(model_name)
        raise ConfigError(
            f"unknown CLIP weights {tag!r} for model {model_name!r} (not a file, not a known "
            f"tag; known tags: {', '.join(tags) or 'none'})"
        )
    cached = _cached_weights(cfg)
    if cached:
        return cached
    if not _hub_reachable():
        where = cfg.get("hf_hub") or cfg.get("url")
        raise OfflineError(
            f"CLIP weights {model_name}/{tag} are not cached and the model hub is unreachable "
            f"(offline). Provide them locally: download '{where}' on a connected machine and "
            f"pass the file with --set ingest.clip_pretrained=/path/to/open_clip_model.safetensors "
            f"(or a folder via --set ingest.clip_model=local-dir:DIR), or copy the Hugging Face "
            f"cache over; or disable the filter with --set ingest.nsfw_enabled=false"
        )
    return tag


#: what open_clip logs on the root logger when it builds a model without weights
_OPEN_CLIP_RANDOM_NOTICE = "No pretrained weights loaded for model"


@contextmanager
def _open_clip_logging(*, drop_random_notice: bool) -> Iterator[None]:
    """Keep open_clip's logging calls from changing the process's logging while the block runs.
    open_clip logs through ``logging.info`` / ``logging.warning``, i.e. on the ROOT logger, which
    also configures the root logger (a stderr handler for the whole process) when nothing has:
    a NullHandler stands in meanwhile, so the root logger is left as it was found. With
    ``drop_random_notice`` its "No pretrained weights loaded ..." record is dropped too (our own
    warning has said it, with the setting that allowed it)."""
    root = logging.getLogger()
    stand_in = logging.NullHandler() if not root.handlers else None

    def keep(record: logging.LogRecord) -> bool:
        return not (
            record.name == "root" and record.getMessage().startswith(_OPEN_CLIP_RANDOM_NOTICE)
        )

    if stand_in is not None:
        root.addHandler(stand_in)
    if drop_random_notice:
        root.addFilter(keep)
    try:
        yield
    finally:
        if drop_random_notice:
            root.removeFilter(keep)
        if stand_in is not None:
            root.removeHandler(stand_in)


def load_clip(
    model_name: str,
    pretrained: str,
    *,
    allow_random: bool = False,
    device: str = "cpu",
) -> ClipModel:
    """Load an open_clip model for embedding (eval mode, no grad needed by callers)."""
    import open_clip
    import torch

    resolved = resolve_pretrained(model_name, pretrained, allow_random=allow_random)
    is_random = resolved is None and not model_name.startswith("local-dir:")
    if is_random:
        log.warning(
            "using an UNTRAINED CLIP (%s, allow_random_clip): NSFW scores are meaningless",
            model_name,
        )
    with torch.random.fork_rng(devices=[]), _open_clip_logging(drop_random_notice=is_random):
        torch.manual_seed(0)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=resolved, device=device
            )
        except RuntimeError as exc:
            raise OfflineError(f"cannot load CLIP {model_name}/{pretrained}: {exc}") from None
        tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    return ClipModel(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        key=cache_key(model_name, pretrained),
        random=is_random,
        device=device,
    )

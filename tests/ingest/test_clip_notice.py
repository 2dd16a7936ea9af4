"""An untrained CLIP is announced once, by us: open_clip's own root-logger notice is dropped and
the root logger is left as it was found (open_clip's ``logging.warning`` would configure it)."""

from __future__ import annotations

import logging

from entityseg_data.ingest.filters import clip as clip_mod


def test_untrained_clip_warns_once_and_leaves_the_root_logger_alone(tiny_clip, caplog, monkeypatch):
    root = logging.getLogger()
    filters, handlers = list(root.filters), list(root.handlers)
    with caplog.at_level(logging.WARNING):
        model = clip_mod.load_clip(tiny_clip, "", allow_random=True)
    assert model.random
    messages = [r.getMessage() for r in caplog.records]
    assert any("UNTRAINED CLIP" in m for m in messages), messages
    assert not any("No pretrained weights loaded" in m for m in messages), messages
    assert root.filters == filters and root.handlers == handlers

    # a process whose logging nobody configured (a script, a notebook): still unconfigured after
    monkeypatch.setattr(root, "handlers", [])
    clip_mod.load_clip(tiny_clip, "", allow_random=True)
    assert root.handlers == []

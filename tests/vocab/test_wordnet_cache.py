"""The offline WordNet cache (``vocab.wordnet.prepare_nltk_data``) is filled safely: two
preparations at once (two pytest-xdist workers or two commands on a fresh machine share
``~/.cache/entityseg-data/nltk_data``) both succeed, every file lands whole, readable by the team.

Was: both copied into the same ``.<name>.tmp`` and renamed it; the second rename found nothing
(FileNotFoundError), and a copy truncated by the other could be renamed half-written."""

from __future__ import annotations

import os
import threading

from entityseg_data.io import file_mode
from entityseg_data.vocab import wordnet
from entityseg_data.vocab.wordnet import WNDB_FILES, lexnames_text, prepare_nltk_data


def test_two_preparations_at_once_both_succeed_with_whole_files(tmp_path, monkeypatch):
    src = tmp_path / "wndb"
    src.mkdir()
    for k, name in enumerate(WNDB_FILES):
        (src / name).write_bytes(f"{name} ".encode() * (1000 + k))
    dest = tmp_path / "nltk_data"
    target = dest / "corpora" / "wordnet"

    # every rename into the cache waits for the other preparation's rename of the same step, so
    # the two always interleave at the worst point: both copies made, neither renamed yet
    barrier = threading.Barrier(2, timeout=60)  # a bound on failure only
    real_replace = os.replace

    def replace_in_step(a, b):
        if os.path.dirname(os.fspath(b)) == os.fspath(target):
            barrier.wait()
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace_in_step)
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            assert prepare_nltk_data(dest, source=src) == dest
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()  # release the other preparation at once

    old = os.umask(0o022)
    try:
        threads = [threading.Thread(target=prepare) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.umask(old)
    assert not errors, errors
    for name in WNDB_FILES:
        assert (target / name).read_bytes() == (src / name).read_bytes(), name
        assert file_mode(target / name) == 0o644, name
    assert (target / "lexnames").read_text() == lexnames_text()
    assert sorted(p.name for p in target.iterdir()) == sorted([*WNDB_FILES, "lexnames"])
    # a prepared cache is not copied again
    monkeypatch.setattr(wordnet, "atomic_copy", None)
    assert prepare_nltk_data(dest, source=src) == dest

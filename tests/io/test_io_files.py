"""io.files: atomic writes with the user's umask (probe 8.5), private files, bounded reads, JSON."""

from __future__ import annotations

import json
import os
import stat

import pytest

from entityseg_data.errors import DataError
from entityseg_data.io import (
    atomic_copy,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    file_mode,
    read_bytes,
    read_json,
)


def test_probe_8_5_atomic_writes_follow_the_umask(shared_dir, umask_022, as_other_user):
    """Probe 8.5: every atomic write was 0600 (mkstemp) whatever the umask."""
    atomic_write_bytes(shared_dir / "a.bin", b"x")
    atomic_write_text(shared_dir / "sub" / "b.txt", "y")
    atomic_write_json(shared_dir / "c.json", {"k": 1})
    with atomic_open(shared_dir / "d.bin") as fh:
        fh.write(b"z")
    for name in ("a.bin", "sub/b.txt", "c.json", "d.bin"):
        assert file_mode(shared_dir / name) == 0o644, name
    assert file_mode(shared_dir / "sub") == 0o755
    if as_other_user is not None:
        res = as_other_user("cat", str(shared_dir / "c.json"))
        assert res.returncode == 0 and json.loads(res.stdout) == {"k": 1}


def test_umask_077_gives_private_files(shared_dir):
    old = os.umask(0o077)
    try:
        atomic_write_text(shared_dir / "t.txt", "y")
    finally:
        os.umask(old)
    assert file_mode(shared_dir / "t.txt") == 0o600


def test_private_files_are_0600_from_the_start(shared_dir, umask_022, as_other_user):
    atomic_write_text(shared_dir / "secret.json", '{"token": "s3cr3t"}', private=True)
    assert file_mode(shared_dir / "secret.json") == 0o600
    if as_other_user is not None:
        res = as_other_user("cat", str(shared_dir / "secret.json"))
        assert res.returncode != 0 and b"s3cr3t" not in res.stdout
    # the temporary file is created 0600: check on a write that stops half-way
    with pytest.raises(RuntimeError), atomic_open(shared_dir / "s2", "w", private=True) as fh:
        tmp = fh.name
        assert stat.S_IMODE(os.fstat(fh.fileno()).st_mode) == 0o600
        raise RuntimeError("stop")
    assert not os.path.exists(tmp) and not (shared_dir / "s2").exists()


def test_failed_write_keeps_the_old_content(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "old")
    with pytest.raises(ValueError), atomic_open(tmp_path / "f.txt", "w") as fh:
        fh.write("new, half")
        raise ValueError
    assert (tmp_path / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_open_refuses_read_modes(tmp_path):
    with pytest.raises(ValueError), atomic_open(tmp_path / "x", "r+b"):
        pass


def test_atomic_copy_gets_umask_mode_not_source_mode(shared_dir, umask_022):
    src = shared_dir / "src.bin"
    src.write_bytes(b"abc" * 1000)
    os.chmod(src, 0o600)
    atomic_copy(src, shared_dir / "out" / "dst.bin")
    assert (shared_dir / "out" / "dst.bin").read_bytes() == b"abc" * 1000
    assert file_mode(shared_dir / "out" / "dst.bin") == 0o644


def test_read_bytes_only_regular_files_within_the_limit(tmp_path):
    (tmp_path / "ok.bin").write_bytes(b"12345")
    assert read_bytes(tmp_path / "ok.bin", max_bytes=5) == b"12345"
    with pytest.raises(DataError, match=r"ok.bin: 5 bytes is over the limit of 4"):
        read_bytes(tmp_path / "ok.bin", max_bytes=4)
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="fifo.jpg: not a regular file"):
        read_bytes(fifo)
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="zero.jpg: not a regular file"):
        read_bytes(tmp_path / "zero.jpg")
    with pytest.raises(DataError, match="a folder"):
        read_bytes(tmp_path)
    with pytest.raises(DataError, match="missing.bin: not found"):
        read_bytes(tmp_path / "missing.bin")


def test_read_bytes_reserves_only_what_the_file_holds(tmp_path):
    """``read(max_bytes + 1)`` reserved the whole limit up front: 4 GiB for every JSON read (a
    MemoryError for a 9-byte file under ``ulimit -v 3G``). Now the read asks for the file's
    size."""
    import tracemalloc

    (tmp_path / "small.json").write_text(json.dumps({"a": list(range(100))}))
    tracemalloc.start()
    try:
        assert read_json(tmp_path / "small.json") == {"a": list(range(100))}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_read_bytes_of_a_file_that_grows_after_the_stat(tmp_path, monkeypatch):
    """The stat said fewer bytes than the file has by the time it is read: read on (bounded) and
    return everything, or refuse it when it is now over the limit."""
    import types

    from entityseg_data.io import files as files_mod

    data = bytes(range(256)) * 9000  # 2.3 MB: more than one 1 MiB chunk after the first read
    (tmp_path / "grows.bin").write_bytes(data)
    monkeypatch.setattr(files_mod, "check_regular_file", lambda path, max_bytes=0: 10)
    monkeypatch.setattr(files_mod.os, "fstat", lambda fd: types.SimpleNamespace(st_size=10))
    assert read_bytes(tmp_path / "grows.bin", max_bytes=len(data)) == data
    assert read_bytes(tmp_path / "grows.bin", max_bytes=len(data) + 5) == data
    with pytest.raises(DataError, match="grows.bin: over the limit"):
        read_bytes(tmp_path / "grows.bin", max_bytes=len(data) - 1)


def test_probe_5_7_deeply_nested_json_is_one_clear_error(tmp_path):
    """Probe 5.7: 100,000 nested '[' gave a RecursionError traceback."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(DataError, match=r"deep.json: malformed JSON \(nested too deeply\)"):
        read_json(deep, "ground truth")
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="nested too deeply"):
        read_json(deep)


def test_read_json_errors_name_the_file(tmp_path):
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf{}")
    with pytest.raises(DataError, match="bom.json: malformed JSON"):
        read_json(tmp_path / "bom.json")
    (tmp_path / "latin.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(DataError, match="latin.json: not UTF-8"):
        read_json(tmp_path / "latin.json")
    with pytest.raises(DataError, match=r"nope.json: not found \(COCO\)"):
        read_json(tmp_path / "nope.json", "COCO")
    (tmp_path / "ok.json").write_text('{"a": [1]}')
    assert read_json(tmp_path / "ok.json") == {"a": [1]}

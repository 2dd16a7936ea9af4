"""Files: atomic writes with the user's umask, private (secret) files, bounded reads, JSON.

Atomic writes go to a temporary sibling of the target (same folder, so the rename is atomic),
are flushed and fsynced, then renamed over the target: a reader never sees a half-written file
and a killed job leaves either the old or the new content.

Permissions: the temporary file is created with ``os.open(..., 0o666)`` so the process umask
applies exactly as it does for ``open(path, "w")`` (umask 022 gives 0644): images, masks,
predictions, exports, statistics and models are readable by the team, a Label Studio or a web
server run by another account. ``private=True`` (credentials, tokens) creates the file 0600 from
the start, so a secret is never readable by others, not even for a moment.

Reads: :func:`read_bytes` reads regular files only (a FIFO or a device named ``*.jpg`` would hang
or never end) and refuses files over a size limit before reading them. :func:`read_json` turns
every way a JSON file can be broken (unreadable, not UTF-8, malformed, nested too deep) into one
:class:`~entityseg_data.errors.DataError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from entityseg_data.errors import DataError

PUBLIC_MODE = 0o666  # before the umask, as open() uses
PRIVATE_MODE = 0o600
DEFAULT_MAX_JSON_BYTES = 4 << 30  # 4 GiB: a read limit, not a memory budget


def _create_temp(path: Path, mode: int) -> tuple[int, str]:
    """Create a new, empty temporary sibling of ``path`` with ``mode`` (umask applied)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, mode), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: no free temporary file name in {path.parent}")


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", *, private: bool = False, **kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    The file gets the mode ``open()`` would give it (0666 minus the umask), or 0600 with
    ``private`` (secrets). ``mode`` is a write mode (``"wb"``, ``"w"``); ``kwargs`` go to
    :func:`os.fdopen` (``encoding=``...). On any exception the temporary file is removed and the
    target is untouched."""
    if "r" in mode or "a" in mode or "+" in mode:
        raise ValueError(f"atomic_open writes a new file; mode {mode!r} is not a write mode")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path, PRIVATE_MODE if private else PUBLIC_MODE)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb", private=private) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, private: bool = False) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w", private=private, encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, indent: int | None = None, *, private: bool = False
) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`atomic_open`)."""
    # json.dumps, not json.dump: dump always takes the pure-Python encoder, dumps the C one when
    # indent is None (same text; a COCO file encodes several times faster)
    text = json.dumps(obj, indent=indent)
    with atomic_open(path, "w", private=private, encoding="utf-8") as fh:
        fh.write(text)


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy ``src`` to ``dst`` atomically; ``dst`` gets the umask's mode (not ``src``'s)."""
    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)


def check_regular_file(path: str | os.PathLike[str], *, max_bytes: int = 0) -> int:
    """Size in bytes of ``path``, after checking it is a regular file (symlinks followed) of
    at most ``max_bytes`` (0 = no limit). Raises DataError naming the file otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise DataError(f"{path}: {kind} (only regular files are read)")
    if max_bytes and st.st_size > max_bytes:
        raise DataError(f"{path}: {st.st_size} bytes is over the limit of {max_bytes} bytes")
    return int(st.st_size)


def read_bytes(path: str | os.PathLike[str], *, max_bytes: int = 0) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (0 = no limit); DataError naming
    the file for a missing/unreadable file, a FIFO, a device, a folder or a too-large file."""
    check_regular_file(path, max_bytes=max_bytes)
    try:
        with open(path, "rb") as fh:
            if not max_bytes:
                data = fh.read()
            else:
                # read(n) reserves n bytes up front (4 GiB for a JSON under the default limit:
                # a MemoryError under `ulimit -v`): ask for the size the file has, one byte more
                # to see it grow, and read on in 1 MiB chunks only if it did
                want = min(os.fstat(fh.fileno()).st_size, max_bytes) + 1
                data = fh.read(want)
                if len(data) == want:
                    parts, total = [data], want
                    while total <= max_bytes:
                        more = fh.read(min(1 << 20, max_bytes + 1 - total))
                        if not more:
                            break
                        parts.append(more)
                        total += len(more)
                    data = b"".join(parts)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if max_bytes and len(data) > max_bytes:  # grew since the stat
        raise DataError(f"{path}: over the limit of {max_bytes} bytes")
    return data


def parse_json(text: str | bytes, where: str) -> Any:
    """Parsed JSON, or one DataError naming ``where`` (malformed, BOM, too deeply nested)."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: malformed JSON ({exc})") from None
    except RecursionError:
        raise DataError(f"{where}: malformed JSON (nested too deeply)") from None


def read_json(
    source: str | os.PathLike[str], what: str = "JSON", *, max_bytes: int = DEFAULT_MAX_JSON_BYTES
) -> Any:
    """The parsed content of a JSON file; one DataError naming the file and ``what`` it should
    be for any problem (missing, not a regular file, too large, not UTF-8, malformed, nested too
    deeply)."""
    try:
        data = read_bytes(source, max_bytes=max_bytes)
    except DataError as exc:
        raise DataError(f"{exc} ({what})") from None
    return parse_json(data, str(source))


def json_source(source: Any, what: str = "JSON") -> tuple[Any, str]:
    """``(parsed JSON, name for messages)`` of a JSON file path (:func:`read_json`), or of an
    already-parsed object (named ``<what>``)."""
    if isinstance(source, str | os.PathLike):
        return read_json(source, what), str(source)
    return source, f"<{what}>"


def file_mode(path: str | os.PathLike[str]) -> int:
    """Permission bits of ``path`` (e.g. 0o644)."""
    return stat.S_IMODE(os.stat(path).st_mode)

"""A small, careful HTTP image downloader (one machine, threads).

* bounded memory: a body is streamed into memory only up to ``max_bytes`` (checked against
  ``Content-Length`` first), and the pipeline keeps at most ``2 * workers`` items in flight;
* per-host rate limit: a token bucket per host shared by all threads (``per_host_rps``);
* timeouts: connect, per-read, and a wall-clock deadline per download attempt
  (``total_timeout``): every socket wait is capped by the time left, so a server that drips a
  byte now and then cannot hold a worker past the deadline;
* retries with exponential backoff and jitter for transient failures (timeouts, resets,
  truncated bodies, 429 and 5xx; ``Retry-After`` honoured up to 60 s);
* redirects followed by hand, at most ``max_redirects``, loops detected;
* content-type check before the body is read and a magic-number check after;
* every failure is a :class:`FetchError` with a ``kind`` for the error report.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from entityseg_data.config.ingest import IngestConfig
from entityseg_data.ingest.magic import sniff_mime

log = logging.getLogger(__name__)

REDIRECT_CODES = (301, 302, 303, 307, 308)
TRANSIENT_KINDS = frozenset({"timeout", "connection", "truncated", "http_429"})  # + http_5xx
_GENERIC_TYPES = ("application/octet-stream", "binary/octet-stream", "application/binary", "")


@dataclass(frozen=True)
class FetchResult:
    """A downloaded body. ``mime`` comes from the magic number, ``content_type`` from the
    server; ``url`` is the final URL after redirects."""

    data: bytes
    url: str
    mime: str
    content_type: str | None
    attempts: int


class FetchError(Exception):
    """A failed download. ``kind`` is short and stable (``http_404``, ``timeout``, ...)."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.attempts = 1

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS or self.kind.startswith("http_5")


class HostRateLimiter:
    """Token bucket per host: requests to one host are spaced ``1 / rps`` seconds apart
    (0 or negative rps: unlimited). Thread-safe."""

    def __init__(self, rps: float) -> None:
        self.interval = 1.0 / rps if rps > 0 else 0.0
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, host: str) -> float:
        """Block until ``host`` may be hit; returns the seconds waited."""
        if self.interval <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + self.interval
        delay = slot - now
        if delay > 0:
            time.sleep(delay)
        return max(delay, 0.0)


class Downloader:
    """Thread-safe downloader; one instance is shared by the pipeline's worker threads."""

    def __init__(self, *, config: IngestConfig) -> None:
        self.config = config
        self.limiter = HostRateLimiter(config.per_host_rps)
        self.pool = urllib3.PoolManager(
            num_pools=64,
            maxsize=max(1, config.workers),
            block=False,
            headers={"User-Agent": config.user_agent, "Accept": "image/*,*/*;q=0.5"},
            retries=False,
        )

    def close(self) -> None:
        self.pool.clear()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str) -> FetchResult:
        """Download ``url`` with retries; raises :class:`FetchError`."""
        cfg = self.config
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self._fetch_once(url)
                return FetchResult(
                    data=result.data,
                    url=result.url,
                    mime=result.mime,
                    content_type=result.content_type,
                    attempts=attempt,
                )
            except FetchError as exc:
                exc.attempts = attempt
                if not exc.transient or attempt > cfg.retries:
                    raise
                delay = cfg.backoff * (2 ** (attempt - 1)) * (1.0 + 0.25 * random.random())
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, 60.0))
                log.debug("retrying %s in %.2fs after %s", url, delay, exc.kind)
                time.sleep(delay)

    def _fetch_once(self, url: str) -> FetchResult:
        cfg = self.config
        deadline = time.monotonic() + cfg.total_timeout if cfg.total_timeout > 0 else None
        seen = {url}
        current = url
        for _ in range(cfg.max_redirects + 1):
            host = _http_host(current)
            waited = self.limiter.wait(host)
            if deadline is not None:
                deadline += waited  # the deadline is for the network, not our own rate limit
            try:
                resp = self.pool.request(
                    "GET",
                    current,
                    preload_content=False,
                    redirect=False,
                    timeout=urllib3.Timeout(
                        connect=_capped(cfg.connect_timeout, deadline, url),
                        read=_capped(cfg.timeout, deadline, url),
                    ),
                )
            except NameResolutionError as exc:  # (subclass of NewConnectionError)
                raise FetchError("dns", f"{current}: {exc}") from None
            except (NewConnectionError, ProtocolError) as exc:  # (before ConnectTimeoutError)
                raise FetchError("connection", f"{current}: {exc}") from None
            except (ConnectTimeoutError, ReadTimeoutError) as exc:
                raise _timeout(current, exc, deadline) from None
            except LocationValueError as exc:  # (an HTTPError and a ValueError)
                raise FetchError("bad_url", f"not a valid URL: {current!r} ({exc})") from None
            except HTTPError as exc:
                raise FetchError("connection", f"{current}: {exc}") from None
            try:
                if resp.status in REDIRECT_CODES:
                    location = resp.headers.get("Location")
                    if not location:
                        raise FetchError("bad_redirect", f"{current}: redirect without Location")
                    try:
                        nxt = urljoin(current, location)
                    except ValueError as exc:
                        raise FetchError(
                            "bad_redirect", f"{current}: bad Location {location!r} ({exc})"
                        ) from None
                    if nxt in seen:
                        raise FetchError("redirect_loop", f"{url}: redirect loop at {nxt}")
                    seen.add(nxt)
                    current = nxt
                    resp.drain_conn()
                    continue
                return self._read(resp, current, deadline)
            except FetchError:
                resp.close()  # a body may be left unread: never reuse this connection
                raise
            finally:
                resp.release_conn()
        raise FetchError("too_many_redirects", f"{url}: more than {cfg.max_redirects} redirects")

    def _read(
        self, resp: urllib3.BaseHTTPResponse, url: str, deadline: float | None
    ) -> FetchResult:
        cfg = self.config
        if resp.status != 200:
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            kind = f"http_{resp.status}"
            raise FetchError(kind, f"{url}: HTTP {resp.status}", retry_after=retry_after)
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in _GENERIC_TYPES and ctype not in cfg.allowed_mime:
            raise FetchError("content_type", f"{url}: content type {ctype!r} is not an image")
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and cfg.max_bytes > 0 and int(length) > cfg.max_bytes:
            raise FetchError("too_large", f"{url}: {length} bytes > max_bytes {cfg.max_bytes}")
        chunks, total = [], 0
        sock = getattr(resp.connection, "sock", None)
        try:
            while True:
                if deadline is not None and sock is not None:
                    # a socket-level deadline: no single wait may end after it
                    sock.settimeout(_capped(cfg.timeout, deadline, url))
                chunk = resp.read1(65536)  # what one socket read brings, at most 64 KiB
                if not chunk:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise FetchError("timeout", f"{url}: download exceeded total_timeout")
                total += len(chunk)
                if cfg.max_bytes > 0 and total > cfg.max_bytes:
                    raise FetchError("too_large", f"{url}: body exceeds {cfg.max_bytes} bytes")
                chunks.append(chunk)
        except ReadTimeoutError as exc:
            raise _timeout(url, exc, deadline) from None
        except ProtocolError as exc:
            raise FetchError("truncated", f"{url}: body cut short ({exc})") from None
        except HTTPError as exc:
            raise FetchError("connection", f"{url}: {exc}") from None
        data = b"".join(chunks)
        if not data:
            raise FetchError("empty", f"{url}: empty body")
        mime = sniff_mime(data[:32])
        if mime is None:
            raise FetchError("not_image", f"{url}: body is not a known image format")
        return FetchResult(data=data, url=url, mime=mime, content_type=ctype or None, attempts=1)


def _http_host(url: str) -> str:
    """The host of an http(s) URL, or FetchError ``bad_url`` (also for a malformed one, such as
    an unclosed IPv6 bracket)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        raise FetchError("bad_url", f"not a valid URL: {url!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise FetchError("bad_url", f"not an http(s) URL: {url!r}")
    return host


def _capped(seconds: float, deadline: float | None, url: str) -> float:
    """``seconds``, cut to the time left before ``deadline``; FetchError ``timeout`` when none
    is left."""
    if deadline is None:
        return seconds
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("timeout", f"{url}: download exceeded total_timeout")
    return min(seconds, left) if seconds > 0 else left


def _timeout(url: str, exc: Exception, deadline: float | None) -> FetchError:
    if deadline is not None and time.monotonic() >= deadline:
        return FetchError("timeout", f"{url}: download exceeded total_timeout")
    return FetchError("timeout", f"{url}: {exc}")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None

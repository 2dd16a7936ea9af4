"""A fake ``label-studio`` program for the start-up signal tests (run as a script).

It reports each phase it reaches as a line ``<phase> <pid>`` written to the FIFO named by
``$FAKE_LS_REPORT`` and blocks for good at the phase named by ``$FAKE_LS_BLOCK``:

* ``boot``: right after it started (a real Label Studio runs its migrations here, 30-70 s);
* ``whoami``: it answers ``/health`` but never answers ``/api/current-user/whoami`` (the CLI is
  still setting up after the server came up);
* anything else: it serves ``/health`` and ``whoami`` until it is stopped.

Blocking is a wait on nothing, never a timed sleep, so a test can signal at a known phase.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def report(phase: str) -> None:
    fd = os.open(os.environ["FAKE_LS_REPORT"], os.O_WRONLY)
    try:
        os.write(fd, f"{phase} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def block_forever() -> None:
    while True:
        signal.pause()


def main(argv: list[str]) -> None:
    block = os.environ.get("FAKE_LS_BLOCK", "")
    host = argv[argv.index("--internal-host") + 1]
    port = int(argv[argv.index("--port") + 1])
    report("spawned")
    if block == "boot":
        block_forever()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _json(self, obj: object) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/health"):
                self._json({"status": "UP"})
            elif self.path.startswith("/api/current-user/whoami"):
                report("whoami")
                if block == "whoami":
                    block_forever()
                self._json({"id": 1, "email": "admin@fake.local"})
            else:
                self.send_error(404)

    server = ThreadingHTTPServer((host, port), Handler)
    report("listening")
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])

"""A local stand-in for the Hugging Face hub's file-resolve API (enough for hf_hub_download).

``HEAD/GET /{datasets/}<repo>/resolve/<revision>/<path>`` answer with the file and the headers
huggingface_hub reads (X-Repo-Commit, ETag, Content-Length). ``gated=True`` answers 401 with
``X-Error-Code: GatedRepo`` like the hub does for a gated repo without access.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, files: dict[str, Path], *, gated: bool = False) -> None:
        self.files = files  # "datasets/<repo>/<path>" -> local file
        self.gated = gated
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                path = self.path.split("?")[0].lstrip("/")
                if hub.gated:
                    self.send_response(401)
                    self.send_header("X-Error-Code", "GatedRepo")
                    self.send_header("X-Error-Message", "Access to this repo is restricted.")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                head, sep, rest = path.partition("/resolve/")
                rel = rest.split("/", 1)[1] if "/" in rest else ""
                local = hub.files.get(f"{head}/{rel}") if sep else None
                if local is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = local.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._answer(False)

            def do_GET(self):
                self._answer(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

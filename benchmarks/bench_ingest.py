"""Ingest throughput: local 12 MP JPEGs and URL ingest from a loopback HTTP server.

Each measured run is a separate process (``entityseg-data ingest``) whose wall time and peak
RSS (summed over its process tree, sampled every 50 ms) are recorded. Optionally the same URL
list is fetched by img2dataset from a separate venv for a side-by-side comparison.

    python benchmarks/bench_ingest.py --n-local 500 --n-url 300 \
        --img2dataset /tmp/i2d_venv/bin/img2dataset

Prints one table; see docs/benchmarks.md for recorded figures.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image


def smooth_jpeg(width: int, height: int, seed: int, orientation: int = 1) -> bytes:
    """Smooth random content (upsampled noise) as a JPEG, optionally with an EXIF rotation."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8))
    im = small.resize((width, height), Image.BILINEAR)
    # fine-grain texture so the files have realistic sizes (~2-4 MB at 12 MP)
    noise = rng.integers(0, 24, size=(height // 4, width // 4, 3), dtype=np.uint8)
    im = Image.fromarray(
        np.clip(
            np.asarray(im, np.int16)
            + np.asarray(Image.fromarray(noise).resize((width, height), Image.NEAREST), np.int16)
            - 12,
            0,
            255,
        ).astype(np.uint8)
    )
    buf = io.BytesIO()
    kwargs = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    im.save(buf, "JPEG", quality=90, **kwargs)
    return buf.getvalue()


def _write_one(args: tuple[str, int, int, int, int]) -> int:
    path, w, h, seed, orientation = args
    data = smooth_jpeg(w, h, seed, orientation)
    Path(path).write_bytes(data)
    return len(data)


def make_local(folder: Path, n: int, width: int, height: int, procs: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [
        (str(folder / f"img_{i:04d}.jpg"), width, height, i, 6 if i % 10 == 9 else 1)
        for i in range(n)
        if not (folder / f"img_{i:04d}.jpg").exists()
    ]
    with ProcessPoolExecutor(procs) as ex:
        list(ex.map(_write_one, jobs, chunksize=4))
    return sum(p.stat().st_size for p in folder.glob("*.jpg"))


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB of the process tree, return code)."""
    import psutil

    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    p = psutil.Process(proc.pid)
    peak = 0
    stderr_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.monotonic() - t0
    reader.join(timeout=5)
    if proc.returncode != 0:
        sys.stderr.write(b"".join(stderr_chunks).decode(errors="replace")[-3000:])
    return wall, peak / 2**20, proc.returncode


class _Handler(BaseHTTPRequestHandler):
    bodies: dict[str, bytes] = {}

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = self.bodies.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(bodies: dict[str, bytes]) -> ThreadingHTTPServer:
    _Handler.bodies = bodies
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def count_images(ws: Path) -> int:
    import sqlite3

    con = sqlite3.connect(ws / "catalog.sqlite")
    try:
        return int(con.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    finally:
        con.close()


def ingest_cmd(ws: Path, source: str, workers: int, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "entityseg_data",
        "-q",
        "-w",
        str(ws),
        "ingest",
        source,
        "--workers",
        str(workers),
        "--set",
        "ingest.per_host_rps=0",
        *extra,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-local", type=int, default=500)
    ap.add_argument("--size", default="4000x3000", help="WxH of the local images")
    ap.add_argument("--n-url", type=int, default=300)
    ap.add_argument("--url-size", default="1600x1200", help="WxH of the served images")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--nsfw-subset", type=int, default=0, help="also time NSFW on N images")
    ap.add_argument("--img2dataset", default="", help="path to an img2dataset executable")
    ap.add_argument("--workdir", default="", help="keep data here (default: a temp dir)")
    args = ap.parse_args()

    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    w, h = (int(x) for x in args.size.split("x"))

    if args.n_local:
        photos = root / f"local_{args.n_local}_{w}x{h}"
        t0 = time.monotonic()
        total = make_local(photos, args.n_local, w, h, procs=os.cpu_count() or 2)
        print(
            f"generated {args.n_local} images ({total / 2**20:.0f} MiB) in "
            f"{time.monotonic() - t0:.0f} s",
            file=sys.stderr,
        )
        ws = root / "ws_local"
        shutil.rmtree(ws, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "entityseg_data", "init", str(ws)],
            check=True,
            capture_output=True,
        )
        wall, peak, rc = run_measured(
            ingest_cmd(ws, f"folder:{photos}", args.workers, ["--no-nsfw"])
        )
        n = count_images(ws)
        rows.append(("local 12MP, entityseg-data (no NSFW)", n, wall, n / wall, peak, rc))
        if args.nsfw_subset:
            sub = root / "nsfw_subset"
            sub.mkdir(exist_ok=True)
            for p in sorted(photos.glob("*.jpg"))[: args.nsfw_subset]:
                if not (sub / p.name).exists():
                    os.link(p, sub / p.name)
            ws2 = root / "ws_nsfw"
            shutil.rmtree(ws2, ignore_errors=True)
            subprocess.run(
                [sys.executable, "-m", "entityseg_data", "init", str(ws2)],
                check=True,
                capture_output=True,
            )
            wall, peak, rc = run_measured(
                ingest_cmd(
                    ws2,
                    f"folder:{sub}",
                    args.workers,
                    [
                        "--set",
                        "ingest.clip_pretrained=",
                        "--set",
                        "ingest.allow_random_clip=true",
                        "--nsfw-threshold",
                        "1.01",
                    ],
                )
            )
            n = count_images(ws2)
            rows.append(("local 12MP + NSFW ViT-B-32 (random)", n, wall, n / wall, peak, rc))

    if args.n_url:
        uw, uh = (int(x) for x in args.url_size.split("x"))
        bodies = {f"/img_{i:04d}.jpg": smooth_jpeg(uw, uh, 10_000 + i) for i in range(args.n_url)}
        mib = sum(len(b) for b in bodies.values()) / 2**20
        httpd = serve(bodies)
        port = httpd.server_address[1]
        url_file = root / "urls.txt"
        url_file.write_text("".join(f"http://127.0.0.1:{port}{p}\n" for p in bodies))
        ws = root / "ws_url"
        shutil.rmtree(ws, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "entityseg_data", "init", str(ws)],
            check=True,
            capture_output=True,
        )
        wall, peak, rc = run_measured(
            ingest_cmd(ws, f"urls:{url_file}", max(8, args.workers), ["--no-nsfw"])
        )
        n = count_images(ws)
        rows.append(
            (f"URL loopback {uw}x{uh} ({mib:.0f} MiB), entityseg-data", n, wall, n / wall, peak, rc)
        )
        if args.img2dataset:
            out = root / "i2d_out"
            shutil.rmtree(out, ignore_errors=True)
            wall, peak, rc = run_measured(
                [
                    args.img2dataset,
                    "--url_list",
                    str(url_file),
                    "--input_format",
                    "txt",
                    "--output_format",
                    "files",
                    "--output_folder",
                    str(out),
                    "--processes_count",
                    "2",
                    "--thread_count",
                    "8",
                    "--disable_all_reencoding",
                    "True",
                    "--enable_wandb",
                    "False",
                ],
                env={"NO_ALBUMENTATIONS_UPDATE": "1"},
            )
            n = len(list(out.rglob("*.jpg")))
            rows.append(("URL loopback, img2dataset (no re-encode)", n, wall, n / wall, peak, rc))
            out2 = root / "i2d_out_resize"
            shutil.rmtree(out2, ignore_errors=True)
            wall, peak, rc = run_measured(
                [
                    args.img2dataset,
                    "--url_list",
                    str(url_file),
                    "--input_format",
                    "txt",
                    "--output_format",
                    "files",
                    "--output_folder",
                    str(out2),
                    "--processes_count",
                    "2",
                    "--thread_count",
                    "8",
                    "--enable_wandb",
                    "False",
                ],
                env={"NO_ALBUMENTATIONS_UPDATE": "1"},
            )
            n = len(list(out2.rglob("*.jpg")))
            rows.append(("URL loopback, img2dataset (default 256px)", n, wall, n / wall, peak, rc))
        httpd.shutdown()

    print(f"{'run':58s} {'images':>6s} {'wall s':>7s} {'img/s':>7s} {'peak MiB':>9s} rc")
    for name, n, wall, rate, peak, rc in rows:
        print(f"{name:58s} {n:6d} {wall:7.1f} {rate:7.2f} {peak:9.0f} {rc}")
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

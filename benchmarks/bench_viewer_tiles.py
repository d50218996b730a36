"""Slide viewer tile latency: medvl's deep-zoom tiles vs ``openslide.deepzoom.DeepZoomGenerator``, same slide, one run.

Both sides serve the same Deep Zoom pyramid (256 px tiles, no overlap, JPEG quality 80, every tile of every level,
requested coarse to fine as OpenSeadragon asks for them) of the same slide:

* medvl: :class:`medvl.apps.tileserver.TileService` (medvl's slide readers, direct scanner-tile decoding, tiles of
  coarse levels composed from finer ones, encoded tiles cached) in-process, and the same behind
  :class:`~medvl.apps.tileserver.TileServer` over HTTP (keep-alive, the session token checked on every request);
* reference: ``DeepZoomGenerator.get_tile`` plus the same JPEG encoding, in-process, and behind a minimal stdlib HTTP
  server written here (the shape of openslide-python's ``deepzoom_server`` example, which caches no tiles).

"Cold" is a fresh slide handle and server, every tile requested once; "warm" is the second request of each tile.
medvl's warm requests hit its encoded-tile cache; ``warm_uncached`` (medvl with the tile cache switched off) shows
what re-rendering a tile costs with its slide's decoders warm. Passes alternate between the contenders; latencies are
pooled over all passes. Slides: the bundled CMU-1-Small-Region SVS (one level: coarse levels must be built from level
0) and a synthetic 8192 x 6144 JPEG-tiled pyramid (4 levels) written here. Writes ``viewer_tiles``.
"""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MEDVL_NO_PROGRESS", "1")

import numpy as np  # noqa: E402

from benchmarks.common import write_record  # noqa: E402
from medvl.apps.deepzoom import DeepZoomGeometry, encode_jpeg  # noqa: E402
from medvl.apps.tileserver import TileServer, TileServerConfig, TileService  # noqa: E402
from medvl.resources import bundled  # noqa: E402

PASSES = int(os.environ.get("MEDVL_BENCH_PASSES", 3))
QUALITY = 80


def order(width: int, height: int) -> list[tuple[int, int, int]]:
    geo = DeepZoomGeometry(width, height)
    return [(lv, c, r) for lv in range(geo.levels) for r in range(geo.tile_count(lv)[1])
            for c in range(geo.tile_count(lv)[0])]


def time_each(fetch, tiles) -> list[float]:
    out = []
    for t in tiles:
        start = time.perf_counter()
        body = fetch(*t)
        out.append(time.perf_counter() - start)
        assert body[:2] == b"\xff\xd8", "not a JPEG"
    return out


# ------------------------------------------------------------------------------------------------ contenders
def reference_tile(dz, level, col, row) -> bytes:
    return encode_jpeg(np.asarray(dz.get_tile(level, (col, row)).convert("RGB")), QUALITY)


def open_reference(path: Path):
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    osr = openslide.OpenSlide(str(path))
    return osr, DeepZoomGenerator(osr, tile_size=256, overlap=0, limit_bounds=False)


class _ReferenceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as medvl's server: neither side waits on delayed ACKs

    def do_GET(self):  # noqa: N802
        level, rest = self.path.split("/")[-2:]
        col, row = rest.split(".")[0].split("_")
        body = reference_tile(self.server.dz, int(level), int(col), int(row))
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HttpClient:
    def __init__(self, url: str):
        host, port = urlsplit(url).netloc.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)

    def get(self, target: str) -> bytes:
        self.conn.request("GET", target)
        resp = self.conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body[:200])
        return body


def run_medvl(path: Path, tiles, cache_mb: float = 256.0) -> dict[str, list[float]]:
    service = TileService([path.parent], TileServerConfig(cache_mb=cache_mb))
    fetch = lambda lv, c, r: service.tile(str(path), lv, c, r)  # noqa: E731
    cold, warm = time_each(fetch, tiles), time_each(fetch, tiles)
    service.close()
    return {"cold": cold, "warm": warm}


def run_medvl_http(path: Path, tiles) -> dict[str, list[float]]:
    with TileServer(TileServerConfig(), roots=[path.parent]) as server:
        client, query = HttpClient(server.url), urlencode({"path": str(path), "token": server.tokens.issue()})
        fetch = lambda lv, c, r: client.get(f"/v1/slide_files/{lv}/{c}_{r}.jpeg?{query}")  # noqa: E731
        return {"cold": time_each(fetch, tiles), "warm": time_each(fetch, tiles)}


def run_reference(path: Path, tiles) -> dict[str, list[float]]:
    osr, dz = open_reference(path)
    fetch = lambda lv, c, r: reference_tile(dz, lv, c, r)  # noqa: E731
    cold, warm = time_each(fetch, tiles), time_each(fetch, tiles)
    osr.close()
    return {"cold": cold, "warm": warm}


def run_reference_http(path: Path, tiles) -> dict[str, list[float]]:
    osr, dz = open_reference(path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ReferenceHandler)
    httpd.dz, httpd.daemon_threads = dz, True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        client = HttpClient(f"http://127.0.0.1:{httpd.server_address[1]}")
        fetch = lambda lv, c, r: client.get(f"/slide_files/{lv}/{c}_{r}.jpeg")  # noqa: E731
        return {"cold": time_each(fetch, tiles), "warm": time_each(fetch, tiles)}
    finally:
        httpd.shutdown()
        httpd.server_close()
        osr.close()


# ------------------------------------------------------------------------------------------------ the run
def synthetic_pyramid(folder: Path) -> Path:
    """An 8192 x 6144 JPEG-tiled 4-level pyramid of an H&E-like scene (tifffile), like a small scanner export."""
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    small = (rng.random((96, 128, 3)) * 60 + np.array([190, 120, 170])).clip(0, 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(small).resize((8192, 6144), Image.Resampling.BICUBIC))
    img = (img.astype(np.int16) + rng.integers(-12, 12, img.shape, dtype=np.int16)).clip(0, 255).astype(np.uint8)
    path = folder / "pyramid.tiff"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for level in range(4):
            tw.write(img, tile=(256, 256), photometric="rgb", compression="jpeg", compressionargs={"level": 85},
                     subfiletype=0 if level == 0 else 1, resolution=(1e4 / (0.25 * 2**level),) * 2,
                     resolutionunit="CENTIMETER")
            img = np.asarray(Image.fromarray(img).reduce(2))
    return path


def stats(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3), "max_ms": round(float(ms.max()), 3)}


def measure(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    import openslide

    with openslide.OpenSlide(str(path)) as osr:
        tiles = order(*osr.dimensions)
    runs = {"medvl": lambda: run_medvl(path, tiles), "medvl_uncached": lambda: run_medvl(path, tiles, cache_mb=0),
            "medvl_http": lambda: run_medvl_http(path, tiles), "reference": lambda: run_reference(path, tiles),
            "reference_http": lambda: run_reference_http(path, tiles)}
    pooled = {k: {"cold": [], "warm": []} for k in runs}
    run_medvl(path, tiles[:5])  # imports and the OS page cache, for everyone
    run_reference(path, tiles[:5])
    for _ in range(PASSES):
        for key, fn in runs.items():
            for phase, samples in fn().items():
                pooled[key][phase].extend(samples)
    out = {k: {phase: stats(v) for phase, v in phases.items()} for k, phases in pooled.items()}
    out["tiles"] = len(tiles)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        slides = {"cmu_svs": bundled("slide"), "pyramid_8k": synthetic_pyramid(Path(tmp))}
        results = {name: measure(path) for name, path in slides.items()}
    ratios = {name: r["medvl_http"]["warm"]["p50_ms"] / r["reference_http"]["warm"]["p50_ms"]
              for name, r in results.items()}
    in_process = {name: r["medvl"]["warm"]["p50_ms"] / r["reference"]["warm"]["p50_ms"] for name, r in results.items()}
    uncached = {name: r["medvl_uncached"]["warm"]["p50_ms"] / r["reference"]["warm"]["p50_ms"]
                for name, r in results.items()}
    cold = {name: r["medvl_http"]["cold"]["p50_ms"] / r["reference_http"]["cold"]["p50_ms"]
            for name, r in results.items()}
    worst = max(ratios.values())
    cmu = results["cmu_svs"]
    figures = {
        "cmu_warm_p50_ms_medvl_http": cmu["medvl_http"]["warm"]["p50_ms"],
        "cmu_warm_p50_ms_reference_http": cmu["reference_http"]["warm"]["p50_ms"],
        "cmu_warm_p99_ms_medvl_http": cmu["medvl_http"]["warm"]["p99_ms"],
        "cmu_warm_p99_ms_reference_http": cmu["reference_http"]["warm"]["p99_ms"],
        "cmu_cold_p50_ms_medvl_http": cmu["medvl_http"]["cold"]["p50_ms"],
        "cmu_cold_p50_ms_reference_http": cmu["reference_http"]["cold"]["p50_ms"],
        "cmu_cold_p99_ms_medvl_http": cmu["medvl_http"]["cold"]["p99_ms"],
        "cmu_cold_p99_ms_reference_http": cmu["reference_http"]["cold"]["p99_ms"],
        "warm_p50_ratio_http": {k: round(v, 4) for k, v in ratios.items()},
        "warm_p50_ratio_in_process": {k: round(v, 4) for k, v in in_process.items()},
        "warm_uncached_p50_ratio_in_process": {k: round(v, 4) for k, v in uncached.items()},
        "cold_p50_ratio_http": {k: round(v, 4) for k, v in cold.items()},
        "passes": PASSES, "slides": results,
    }
    load = os.getloadavg()[0]
    notes = ("256 px Deep Zoom tiles (no overlap, JPEG q80), every tile of every level requested coarse to fine, "
             f"{PASSES} alternating passes pooled; 2-core machine, 1-min load average {load:.1f} at the end. medvl's "
             "warm requests are answered from its encoded-tile cache; the reference (DeepZoomGenerator + the same "
             "JPEG encoder, as openslide's deepzoom_server) keeps no tile cache, so 'warm' means OpenSlide's own "
             "caches are warm. warm_uncached (medvl with its tile cache off) re-renders every tile. Cold figures "
             "include building coarse levels: the reference reads them from level 0 on the one-level SVS, medvl "
             "composes them from finer tiles.")
    write_record("viewer_tiles", baseline="openslide.deepzoom.DeepZoomGenerator (+ JPEG), over HTTP",
                 figures=figures, ratio=worst,
                 ratio_meaning="medvl warm p50 tile latency over the reference's, over HTTP, worst slide "
                               "(lower is better)",
                 target="<= 1.0", passed=worst <= 1.0, notes=notes)


if __name__ == "__main__":
    main()

"""The tile endpoint over real HTTP: DZI descriptor and JPEG tiles, tokens, root checks, 4xx answers, 8 viewers."""

import http.client
import json
import random
import shutil
import threading
from io import BytesIO
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
import pytest
from PIL import Image

from medvl.apps.deepzoom import DeepZoomSlide
from medvl.apps.tileserver import HttpError, SessionTokens, TileServer, TileServerConfig
from medvl.io.slide import open_slide
from tests.pathology.synthetic_slides import write_pyramid_tiff


@pytest.fixture
def root(tmp_path, svs_path) -> Path:
    ws = tmp_path / "root" / "ws"
    (ws / "slides").mkdir(parents=True)
    shutil.copyfile(svs_path, ws / "slides" / "a.svs")
    (ws / "slides" / "notes.txt").write_text("not a slide")
    return tmp_path / "root"


@pytest.fixture
def server(root):
    with TileServer(TileServerConfig(), roots=[root]) as srv:
        yield srv


class Client:
    """One viewer: a keep-alive connection and a session token."""

    def __init__(self, server: TileServer, token: str | None = None):
        host, port = urlsplit(server.url).netloc.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.token = server.tokens.issue() if token is None else token

    def get(self, path: str, slide: str | Path | None = None, method: str = "GET", **extra) -> tuple[int, bytes]:
        query = {k: v for k, v in {"path": None if slide is None else str(slide), "token": self.token,
                                   **extra}.items() if v is not None}
        self.conn.request(method, f"{path}?{urlencode(query)}" if query else path)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def tile(self, slide, level, col, row) -> tuple[int, bytes]:
        return self.get(f"/v1/slide_files/{level}/{col}_{row}.jpeg", slide)


def test_tokens_sign_expire_and_refuse_forgeries():
    tokens = SessionTokens(b"k" * 32, ttl_s=60)
    token = tokens.issue("s1", now=1000.0)
    assert tokens.check(token, now=1030.0) == "s1"
    with pytest.raises(HttpError) as exc:
        tokens.check(token, now=1100.0)
    assert exc.value.status == 403 and "expired" in str(exc.value)
    sid, exp, sig = token.split(".")
    for forged in (f"s2.{exp}.{sig}", f"{sid}.{int(exp) + 999}.{sig}", SessionTokens(b"x" * 32).issue("s1"), "a.b"):
        with pytest.raises(HttpError) as exc:
            tokens.check(forged, now=1030.0)
        assert exc.value.status == 403
    with pytest.raises(HttpError) as exc:
        tokens.check(None)
    assert exc.value.status == 401


def test_descriptor_and_tiles_are_the_slide(server, root):
    slide = root / "ws" / "slides" / "a.svs"
    viewer = Client(server)
    status, body = viewer.get("/v1/slide.dzi", slide)
    assert status == 200
    image = json.loads(body)["Image"]
    assert image["Size"] == {"Width": 2220, "Height": 2967} and image["TileSize"] == 256 and image["Overlap"] == 0
    assert "deepzoom/2008" in image["xmlns"]  # what OpenSeadragon's DZI source recognises
    status, jpeg = viewer.tile(slide, 12, 3, 4)
    assert status == 200
    served = np.asarray(Image.open(BytesIO(jpeg)))
    with open_slide(slide) as s:
        pixels = s.read_region((3 * 256, 4 * 256), 0, (256, 256))
        assert np.array_equal(DeepZoomSlide(s).tile(12, 3, 4), pixels)
    assert served.shape == (256, 256, 3) and np.abs(served.astype(int) - pixels).mean() < 8  # JPEG of those pixels
    assert viewer.tile(slide, 12, 3, 4) == (200, jpeg)  # the cached bytes
    relative = viewer.tile("ws/slides/a.svs", 12, 3, 4)  # relative to a root
    assert relative == (200, jpeg)


def test_refusals_are_4xx_and_write_nothing(server, root, tmp_path):
    slide = root / "ws" / "slides" / "a.svs"
    outside = tmp_path / "outside.svs"
    shutil.copyfile(slide, outside)
    (root / "ws" / "link.svs").symlink_to(outside)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    viewer = Client(server)
    cases = {
        "no token": (Client(server, token="").get("/v1/slide.dzi", slide), 401),
        "forged token": (Client(server, token="x.1.y").get("/v1/slide.dzi", slide), 403),
        "expired token": (Client(server, server.tokens.issue(now=0.0)).get("/v1/slide.dzi", slide), 403),
        "absolute path outside": (viewer.get("/v1/slide.dzi", outside), 403),
        "dot-dot": (viewer.get("/v1/slide.dzi", "ws/../../outside.svs"), 403),
        "symlink out of the root": (viewer.get("/v1/slide.dzi", root / "ws" / "link.svs"), 403),
        "missing file": (viewer.get("/v1/slide.dzi", root / "ws" / "slides" / "none.svs"), 404),
        "no path": (viewer.get("/v1/slide.dzi"), 400),
        "not a slide": (viewer.get("/v1/slide.dzi", root / "ws" / "slides" / "notes.txt"), 415),
        "level too deep": (viewer.tile(slide, 13, 0, 0), 404),
        "column off the level": (viewer.tile(slide, 12, 9, 0), 404),
        "row off the level": (viewer.tile(slide, 0, 0, 1), 404),
        "malformed tile": (viewer.get("/v1/slide_files/12/3-4.jpeg", slide), 404),
        "unknown route": (viewer.get("/etc/passwd", slide), 400),
        "POST": (viewer.get("/v1/slide.dzi", slide, method="POST"), 405),
    }
    for name, ((status, body), expected) in cases.items():
        assert status == expected, (name, status, body)
        if status != 405:
            assert json.loads(body)["error"], name
        assert b"outside.svs" not in body and str(tmp_path).encode() not in body, name  # no path echoed
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written
    assert viewer.get("/health", token=None)[0] == 200  # the connection survived every refusal


def test_a_changed_file_is_reopened(server, root):
    target = root / "ws" / "slides" / "b.tiff"
    write_pyramid_tiff(target, width=600, height=400)
    viewer = Client(server)
    assert json.loads(viewer.get("/v1/slide.dzi", target)[1])["Image"]["Size"] == {"Width": 600, "Height": 400}
    first = viewer.tile(target, 9, 0, 0)[1]
    write_pyramid_tiff(target, width=900, height=500)  # same name, new content: never the old tiles
    assert json.loads(viewer.get("/v1/slide.dzi", target)[1])["Image"]["Size"] == {"Width": 900, "Height": 500}
    assert viewer.tile(target, 9, 0, 0)[1] != first


def test_a_slide_without_mpp_is_served(server, root):
    """Tiles need no physical pixel size: the endpoint serves the slide, and the viewer asks the user for the mpp."""
    from tests.apps.conftest import write_slide_without_mpp

    target = write_slide_without_mpp(root / "ws" / "slides" / "nompp.tiff")
    with open_slide(target) as s:
        assert s.mpp is None
    viewer = Client(server)
    assert viewer.get("/v1/slide.dzi", target)[0] == 200
    status, jpeg = viewer.tile(target, 11, 1, 1)
    assert status == 200 and Image.open(BytesIO(jpeg)).size == (256, 256)


def test_eight_concurrent_viewers(server, root):
    """Eight viewers, each with its own token and connection, fetch the deep levels in their own order at once;
    every tile arrives and is the same for all of them."""
    slide = root / "ws" / "slides" / "a.svs"
    with open_slide(slide) as s:
        geo = DeepZoomSlide(s).geometry
    wanted = [(lv, c, r) for lv in range(geo.max_level - 3, geo.max_level + 1)
              for c in range(geo.tile_count(lv)[0]) for r in range(min(4, geo.tile_count(lv)[1]))]
    results: dict[int, dict] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def view(i: int) -> None:
        try:
            viewer, order = Client(server), list(wanted)
            random.Random(i).shuffle(order)
            start.wait()
            results[i] = {t: viewer.tile(slide, *t) for t in order}
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=view, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(results) == 8
    assert len(wanted) == 4 + 9 + 20 + 36  # composed, reduced and full-resolution tiles
    for got in results.values():
        assert all(status == 200 for status, _ in got.values())
        assert {t: body for t, (_, body) in got.items()} == {t: body for t, (_, body) in results[0].items()}


def test_stop_closes_the_port(root):
    srv = TileServer(TileServerConfig(), roots=[root]).start()
    url = srv.url
    assert Client(srv).get("/health", token=None)[0] == 200
    srv.stop()
    host, port = urlsplit(url).netloc.split(":")
    with pytest.raises(OSError):
        http.client.HTTPConnection(host, int(port), timeout=5).request("GET", "/health")

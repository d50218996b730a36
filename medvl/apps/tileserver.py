"""The local deep-zoom tile endpoint of the slide viewer: DZI descriptors and JPEG tiles over HTTP.

OpenSeadragon in the browser asks for ``GET /v1/slide.dzi?path=P&token=T`` (the Deep Zoom descriptor, JSON) and then
``GET /v1/slide_files/{level}/{col}_{row}.jpeg?path=P&token=T``, the URL layout of the DZI format. Tiles are made by
:class:`~medvl.apps.deepzoom.DeepZoomSlide` from medvl's own slide readers and kept as encoded JPEG in a
least-recently-used cache bounded in bytes; open slides are kept too (a bounded number, closed when evicted and no
request uses them).

Safety: the server listens on 127.0.0.1 unless told otherwise; it serves only files inside the allowed roots
(:func:`allowed_roots`: the app's workspace roots and its upload folder, resolved with symlinks followed, ``..``
refused); every request but ``/health`` carries a per-session token (:class:`SessionTokens`, HMAC-SHA256 over a
session id and an expiry, signed with a secret that ``medvl app`` hands to the Streamlit server through the
environment). Answers: 400 malformed request, 401 no token, 403 bad or expired token or a path outside the roots,
404 no such file, level or tile, 405 other methods, 415 not a slide, 422 unreadable pixels. Logs never carry the
query string (it names the file).

``medvl app`` runs the server in a thread of its own process, beside the Streamlit child in the same process group,
and stops both together; a Streamlit server started without ``medvl app`` (``streamlit run``, tests) starts one in
its own process the first time a page needs it (:func:`medvl.apps.ui.tile_endpoint`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from medvl.apps import roots as roots_mod
from medvl.apps.deepzoom import DeepZoomSlide
from medvl.config import Config
from medvl.errors import ConfigError, InputError, MedvlError
from medvl.log import get_logger

log = get_logger(__name__)

__all__ = ["SECRET_ENV", "URL_ENV", "SessionTokens", "TileServer", "TileServerConfig", "TileService", "allowed_roots"]

#: environment variables through which ``medvl app`` tells the Streamlit server where the endpoint is
URL_ENV = "MEDVL_TILE_URL"
SECRET_ENV = "MEDVL_TILE_SECRET"
_TILE = re.compile(r"^/v1/slide_files/(\d{1,3})/(\d{1,7})_(\d{1,7})\.jpeg$")


@dataclass
class TileServerConfig(Config):
    """Settings of the tile endpoint.

    Attributes:
        host: address to listen on (127.0.0.1: this machine only).
        port: TCP port; 0 picks a free one.
        tile_size: Deep Zoom tile side in pixels.
        overlap: pixels each tile shares with its neighbours.
        quality: JPEG quality of the tiles.
        cache_mb: megabytes of encoded tiles kept.
        max_slides: open slides kept.
        token_ttl_s: lifetime of a session token in seconds.
    """

    host: str = "127.0.0.1"
    port: int = 0
    tile_size: int = 256
    overlap: int = 0
    quality: int = 80
    cache_mb: float = 256.0
    max_slides: int = 8
    token_ttl_s: float = 12 * 3600.0

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"TileServerConfig.port: {self.port} is not a TCP port")
        if not 16 <= self.tile_size <= 2048 or not 0 <= self.overlap < self.tile_size // 2:
            raise ConfigError(f"TileServerConfig: bad tile size {self.tile_size} / overlap {self.overlap}")
        if not 1 <= self.quality <= 100 or self.cache_mb < 0 or self.max_slides < 1 or self.token_ttl_s <= 0:
            raise ConfigError("TileServerConfig: quality 1..100, cache_mb >= 0, max_slides >= 1, token_ttl_s > 0")


class HttpError(MedvlError):
    """A request the endpoint refuses, with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------------------ tokens
class SessionTokens:
    """Per-session tokens: ``<session>.<expiry>.<HMAC-SHA256(secret, session.expiry)>``, checked without state.

    Args:
        secret: the signing key (shared by the app server, which issues, and the tile server, which checks).
        ttl_s: how long an issued token is valid.
    """

    def __init__(self, secret: bytes, ttl_s: float = 12 * 3600.0):
        if len(secret) < 16:
            raise ConfigError("the tile token secret must have at least 16 bytes")
        self._secret, self.ttl_s = secret, float(ttl_s)

    def _sign(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()

    def issue(self, session: str | None = None, now: float | None = None) -> str:
        """A new token for ``session`` (a random session id when omitted)."""
        sid = session or secrets.token_hex(8)
        if not re.fullmatch(r"[0-9a-zA-Z_-]{1,64}", sid):
            raise ConfigError("a session id is 1-64 letters, digits, '_' or '-'")
        body = f"{sid}.{int((time.time() if now is None else now) + self.ttl_s)}"
        return f"{body}.{self._sign(body)}"

    def expiry(self, token: str) -> float:
        """The expiry time written in a token (not checked)."""
        return float(token.split(".")[1])

    def check(self, token: str | None, now: float | None = None) -> str:
        """The token's session id; :class:`HttpError` 401 without a token, 403 when forged or expired."""
        if not token:
            raise HttpError(401, "a session token is required")
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            raise HttpError(403, "malformed session token")
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(body), parts[2]):
            raise HttpError(403, "invalid session token")
        if int(parts[1]) < (time.time() if now is None else now):
            raise HttpError(403, "expired session token: reload the page")
        return parts[0]


# ------------------------------------------------------------------------------------------------ tiles
def allowed_roots(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where the endpoint may read: the app's workspace roots and the upload folder (when it exists), from ``env``
    (default: this process's environment)."""
    from medvl.apps.uploads import upload_dir

    found = roots_mod.app_roots(env)
    uploads = upload_dir(env).expanduser().resolve()
    if uploads.is_dir() and uploads not in found:
        found.append(uploads)
    return found


class _OpenSlide:
    """An open slide shared by requests; closed once evicted and no request uses it."""

    def __init__(self, dz: DeepZoomSlide, stamp: tuple[int, int]):
        self.dz, self.stamp, self.users, self.evicted = dz, stamp, 0, False


class TileService:
    """Deep Zoom descriptors and JPEG tiles of the slides inside ``roots`` (no HTTP; thread-safe).

    Args:
        roots: allowed roots (resolved folders); None reads :func:`allowed_roots` of ``env`` on every request, so a
            root that appears later (the upload folder, at the first upload) counts.
        config: tile size, quality and cache sizes.
        env: the environment the roots are read from (default: this process's).
    """

    def __init__(self, roots: Sequence[Path] | None = None, config: TileServerConfig | None = None,
                 env: Mapping[str, str] | None = None):
        from medvl.io.tiled import TileCache

        self.config = config or TileServerConfig()
        self._env = None if env is None else dict(env)
        self._roots = None if roots is None else [Path(r).resolve() for r in roots]
        self._slides: OrderedDict[Path, _OpenSlide] = OrderedDict()
        self._lock = threading.Lock()
        self._jpegs = TileCache(int(self.config.cache_mb * 2**20))

    @property
    def roots(self) -> list[Path]:
        return allowed_roots(self._env) if self._roots is None else list(self._roots)

    def resolve(self, path: str | None) -> Path:
        """The resolved file for a request's ``path``; :class:`HttpError` 400/403/404."""
        if not path:
            raise HttpError(400, "the 'path' parameter is required")
        try:
            return roots_mod.resolve_file_in_roots(path, self.roots)
        except roots_mod.OutsideRootsError as exc:
            raise HttpError(403, str(exc)) from None
        except InputError as exc:
            raise HttpError(404, str(exc)) from None

    @contextmanager
    def open(self, path: Path) -> Iterator[DeepZoomSlide]:
        """The Deep Zoom view of a resolved slide, opened once and shared (reopened when the file changes)."""
        entry = self._acquire(path)
        try:
            yield entry.dz
        finally:
            with self._lock:
                entry.users -= 1
                if entry.evicted and entry.users == 0:
                    entry.dz.slide.close()

    def _acquire(self, path: Path) -> _OpenSlide:
        from medvl.io.slide import open_slide

        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            entry = self._slides.get(path)
            if entry is not None and entry.stamp != stamp:
                self._evict(path)
                entry = None
            if entry is None:
                try:
                    slide = open_slide(path)
                except InputError as exc:
                    raise HttpError(415, f"not a readable slide ({exc.problem})") from None
                cfg = self.config
                entry = self._slides[path] = _OpenSlide(DeepZoomSlide(slide, cfg.tile_size, cfg.overlap), stamp)
                while len(self._slides) > cfg.max_slides:
                    self._evict(next(iter(self._slides)))
            self._slides.move_to_end(path)
            entry.users += 1
            return entry

    def _evict(self, path: Path) -> None:
        entry = self._slides.pop(path)
        entry.evicted = True
        if entry.users == 0:
            entry.dz.slide.close()

    def descriptor(self, path: str | None) -> dict[str, Any]:
        """The DZI descriptor (JSON form, with the Deep Zoom 2008 namespace OpenSeadragon recognises)."""
        with self.open(self.resolve(path)) as dz:
            desc = dz.geometry.descriptor("jpeg")
        desc["Image"]["xmlns"] = "http://schemas.microsoft.com/deepzoom/2008"
        return desc

    def tile(self, path: str | None, level: int, col: int, row: int) -> bytes:
        """One JPEG tile; :class:`HttpError` for anything not servable."""
        resolved = self.resolve(path)
        with self.open(resolved) as dz:
            try:
                dz.geometry.check(level, col, row)
            except InputError as exc:
                raise HttpError(404, exc.problem) from None
            stat = resolved.stat()
            key = (str(resolved), stat.st_mtime_ns, level, col, row)
            try:
                data = self._jpegs.get(key, lambda: np.frombuffer(dz.jpeg(level, col, row, self.config.quality),
                                                                  np.uint8))
            except InputError as exc:  # damaged pixel data, a non-RGB slide
                raise HttpError(422, exc.problem) from None
        return data.tobytes()

    def close(self) -> None:
        """Close every open slide."""
        with self._lock:
            for path in list(self._slides):
                self._evict(path)


# ------------------------------------------------------------------------------------------------ HTTP
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a viewer fetches many tiles over a few connections
    # headers and body leave in two writes; with Nagle's algorithm the body then waits for the client's delayed ACK
    # (about 40 ms per tile on Linux)
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 - the http.server method name
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/health":
                self._send(200, "application/json", json.dumps({"status": "ok"}).encode())
                return
            self.server.tokens.check(query.get("token"))
            if url.path == "/v1/slide.dzi":
                body = json.dumps(self.server.service.descriptor(query.get("path"))).encode()
                self._send(200, "application/json", body)
                return
            match = _TILE.match(url.path)
            if match is None:
                raise HttpError(404 if url.path.startswith("/v1/") else 400, "unknown request")
            level, col, row = (int(g) for g in match.groups())
            self._send(200, "image/jpeg", self.server.service.tile(query.get("path"), level, col, row),
                       cache="private, max-age=3600")
        except HttpError as exc:
            self._send(exc.status, "application/json", json.dumps({"error": str(exc)}).encode())
        except Exception as exc:  # a bug must not kill the connection thread silently
            log.warning("tile request failed: %s", type(exc).__name__)
            self._send(500, "application/json", json.dumps({"error": "internal error"}).encode())

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._send(204, "text/plain", b"")

    def _refuse(self) -> None:
        self._send(405, "application/json", json.dumps({"error": "only GET is served"}).encode())

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

    def _send(self, status: int, ctype: str, body: bytes, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        # tiles are fetched by the viewer's iframe (another origin); the token, not the origin, guards them
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, OPTIONS")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server signature
        log.debug("tile endpoint: %s %s", self.command, urlsplit(self.path).path)  # never the query (file name)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: TileService, tokens: SessionTokens):
        self.service, self.tokens = service, tokens
        super().__init__(address, _Handler)


class TileServer:
    """The endpoint: a :class:`TileService` behind a threaded HTTP server, started and stopped in-process.

    Args:
        config: address, tile layout, caches.
        roots: allowed roots (default: :func:`allowed_roots` of ``env``, read per request).
        secret: token signing key (default: random).
        env: the environment the roots are read from (default: this process's).
    """

    def __init__(self, config: TileServerConfig | None = None, roots: Sequence[Path] | None = None,
                 secret: bytes | None = None, env: Mapping[str, str] | None = None):
        self.config = config or TileServerConfig()
        self.secret = secret or secrets.token_bytes(32)
        self.tokens = SessionTokens(self.secret, self.config.token_ttl_s)
        self.service = TileService(roots, self.config, env)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the tile server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> TileServer:
        """Bind and serve in a daemon thread; returns self."""
        try:
            self._httpd = _HTTPServer((self.config.host, self.config.port), self.service, self.tokens)
        except OSError as exc:
            raise InputError(None, f"the tile endpoint cannot listen on {self.config.host}:{self.config.port} "
                                   f"({exc.strerror or exc})") from None
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="medvl-tiles", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the open slides."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.service.close()

    def environment(self) -> dict[str, str]:
        """What a Streamlit server needs to issue tokens for this endpoint and point viewers at it."""
        return {URL_ENV: self.url, SECRET_ENV: self.secret.hex()}

    def __enter__(self) -> TileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def endpoint_from_env(env: Mapping[str, str] | None = None) -> tuple[str, SessionTokens] | None:
    """``(url, tokens)`` of an endpoint announced by ``medvl app`` in the environment, else None."""
    env = os.environ if env is None else env
    url, secret = env.get(URL_ENV), env.get(SECRET_ENV)
    if not url or not secret:
        return None
    try:
        return url.rstrip("/"), SessionTokens(bytes.fromhex(secret))
    except ValueError:
        raise ConfigError(f"{SECRET_ENV} is not a hex key") from None

"""The web UI's files (web/ at the repository's top, or WEB_DIR): which are served, and each read, hashed and
gzipped on its first request, then held in memory. Nothing is read when the app is made, so the page costs neither
cold start nor /predict anything (task bench measures that against the same function with WEB_UI=off)."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from litestar.exceptions import NotFoundException

log = logging.getLogger("function")
REPOSITORY_WEB = Path(__file__).resolve().parents[2] / "web"
INDEX = "index.html"
# Served name -> file under the web folder. Nothing else is served.
FILES = {
    "app.css": "app.css",
    "theme.js": "theme.js",
    "app.js": "app.js",
    "api.js": "api.js",
    "photos.js": "photos.js",
    "results.js": "results.js",
    "history.js": "history.js",
    "stats.js": "stats.js",
    "vendor/bootstrap.min.css": "node_modules/bootstrap/dist/css/bootstrap.min.css",
    "vendor/bootstrap.bundle.min.js": "node_modules/bootstrap/dist/js/bootstrap.bundle.min.js",
    "vendor/chart.umd.min.js": "node_modules/chart.js/dist/chart.umd.min.js",
}
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}  # Litestar adds the charset
GZIP_MIN_BYTES = 1024  # below this the gzip header and a second round of buffers cost more than they save


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None  # None: gzip does not pay
    etag: str
    media_type: str

    @classmethod
    def of(cls, body: bytes, suffix: str) -> Asset:
        import gzip

        packed = gzip.compress(body, compresslevel=9, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
        gzipped = packed if packed is not None and len(packed) < len(body) * 0.9 else None
        return cls(body, gzipped, f'"{hashlib.sha256(body).hexdigest()[:20]}"', TYPES[suffix])


class WebFiles:
    """The web folder's files, each read once on first use. `version()` is a hash of every file the page loads,
    the `<version>` of their URLs under /static/."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or REPOSITORY_WEB
        self._assets: dict[str, Asset] = {}
        self._version: str | None = None
        self._lock = threading.Lock()

    def asset(self, name: str) -> Asset:
        if name not in self._assets:
            path = self.folder / (FILES[name] if name != INDEX else INDEX)
            try:
                body = path.read_bytes()
            except OSError as exc:  # where it was looked for goes to the log, not to the client
                log.warning("the web UI's file %s is not installed: %s", name, exc)
                raise NotFoundException(f"the web UI's file {name} is not installed: {self.hint}") from exc
            if name == INDEX:
                body = body.replace(b"{{static}}", f"static/{self.version()}".encode())
            self._assets[name] = Asset.of(body, path.suffix)
        return self._assets[name]

    def version(self) -> str:
        with self._lock:
            if self._version is None:
                digest = hashlib.sha256()
                for name in sorted(FILES):
                    digest.update(name.encode() + b"\0" + self._bytes(name) + b"\0")
                self._version = digest.hexdigest()[:12]
            return self._version

    def _bytes(self, name: str) -> bytes:
        try:
            return (self.folder / FILES[name]).read_bytes()
        except OSError as exc:
            log.warning("the web UI's file %s is not installed: %s", name, exc)
            raise NotFoundException(f"the web UI's file {name} is not installed: {self.hint}") from exc

    @property
    def hint(self) -> str:
        return (
            "run `npm ci` in web/, or set WEB_DIR to a folder made by `python -m function.http.collect_web`"
        )

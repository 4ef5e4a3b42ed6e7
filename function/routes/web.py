"""The web UI (web/ at the repository's top, or WEB_DIR): the page at GET /, its files under /static/<version>/.

Nothing is read when the app is made: a file is read, hashed and gzipped on its first request and then served
from memory, so serving the page costs neither cold start nor /predict anything (task bench measures that
against the same function with WEB_UI=off, which leaves these routes out). `<version>` is a hash of every
file the page loads, so those answers may be cached for a year; the page itself is `no-cache` with an ETag.
The page's own modules import each other by relative names, which the shared version prefix keeps working.

`python -m function.routes.web SOURCE TARGET` copies the files served (web/ and the few needed from
web/node_modules, not the whole of it) into TARGET: what an image puts under WEB_DIR."""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from litestar import MediaType, Request, Response, get
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
TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
}  # fmt: skip  (Litestar adds the charset)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self)",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"
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
    """The web folder's files, each read once on first use."""

    def __init__(self, folder: Path):
        self.folder = folder
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
        return "run `npm ci` in web/, or set WEB_DIR to a folder made by `python -m function.routes.web`"


def answer(request: Request, asset: Asset, cache_control: str, headers: dict[str, str]) -> Response:
    common = {"ETag": asset.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding", **headers}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=common)
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(
            asset.gzipped, media_type=asset.media_type, headers={**common, "Content-Encoding": "gzip"}
        )
    return Response(asset.body, media_type=asset.media_type, headers=common)


def handlers(settings, folder: Path | None = None) -> list:
    """GET / and GET /static/{version}/{name}, serving `folder`, else settings.web_dir (WEB_DIR), else the
    repository's web/."""
    files = WebFiles(folder or getattr(settings, "web_dir", None) or REPOSITORY_WEB)

    @get("/", summary="The web UI", sync_to_thread=True, media_type=MediaType.HTML)
    def page(request: Request) -> Response:
        return answer(request, files.asset(INDEX), "no-cache", PAGE_HEADERS)

    # Files for the page, not an API: left out of the OpenAPI document (one operation cannot say CSS or script)
    @get("/static/{version:str}/{name:path}", sync_to_thread=True, include_in_schema=False)
    def static(request: Request, version: str, name: str) -> Response:
        name = name.lstrip("/")
        if name not in FILES:
            raise NotFoundException(f"no file {name} in the web UI")
        # Another version (a page from an older revision during a rollout): this one's file, not to be cached.
        cache = IMMUTABLE if version == files.version() else "no-cache"
        return answer(request, files.asset(name), cache, {"X-Content-Type-Options": "nosniff"})

    return [page, static]


def collect(source: Path, target: Path) -> None:
    """Copy the served files from `source` (web/ after `npm ci`) into `target`, with the same layout."""
    for relative in [INDEX, *FILES.values()]:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target / relative)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m function.routes.web SOURCE_WEB_DIR TARGET_DIR")
    collect(Path(sys.argv[1]), Path(sys.argv[2]))

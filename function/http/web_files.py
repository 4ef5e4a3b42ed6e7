"""The web UI's files, and the API documentation's: which are served, and each read, hashed and gzipped on its
first request, then held in memory. Nothing is read when the app is made, so the page costs neither cold start nor
/predict anything (task bench measures that against the same function with WEB_UI=off).

The folder: WEB_DIR if set; else the copy a wheel carries inside the package (`web_ui/`, collected when the wheel
was built); else the checkout's web/ (an editable install, after `npm ci` in web/)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from litestar.exceptions import NotFoundException

from function.http.collect_web import DOCS_FILES, FILES, INDEX

log = logging.getLogger("function")
PACKAGED_WEB = Path(__file__).resolve().parent / "web_ui"
REPOSITORY_WEB = Path(__file__).resolve().parents[2] / "web"
# Served name -> file under the web folder. Nothing else is served.
SERVED = {INDEX: INDEX, **FILES, **DOCS_FILES}
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
    """The web folder's files, each read once on first use. `version(files)` is a hash of those files (by default
    every file the page loads), the `<version>` of their URLs."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or default_folder()
        self._assets: dict[str, Asset] = {}
        self._versions: dict[tuple[str, ...], str] = {}
        self._lock = threading.Lock()

    def asset(self, name: str) -> Asset:
        if name not in self._assets:
            body = self._bytes(name)
            if name == INDEX:
                body = body.replace(b"{{static}}", f"static/{self.version()}".encode())
            self._assets[name] = Asset.of(body, Path(SERVED[name]).suffix)
        return self._assets[name]

    def version(self, files: Mapping[str, str] = FILES) -> str:
        names = tuple(sorted(files))
        with self._lock:
            if names not in self._versions:
                digest = hashlib.sha256()
                for name in names:
                    digest.update(name.encode() + b"\0" + self._bytes(name) + b"\0")
                self._versions[names] = digest.hexdigest()[:12]
            return self._versions[names]

    def installed(self, files: Mapping[str, str]) -> bool:
        """Whether every one of `files` is in the folder."""
        return all((self.folder / SERVED[name]).is_file() for name in files)

    def _bytes(self, name: str) -> bytes:
        try:
            return (self.folder / SERVED[name]).read_bytes()
        except OSError as exc:  # where it was looked for goes to the log, not to the client
            log.warning("the web UI's file %s is not installed: %s", name, exc)
            raise NotFoundException(f"the web UI's file {name} is not installed: {self.hint}") from exc

    @property
    def hint(self) -> str:
        return (
            "run `npm ci` in web/, or set WEB_DIR to a folder made by `python -m function.http.collect_web`, "
            "or install the function from a wheel built after `npm ci`"
        )


def default_folder() -> Path:
    """The wheel's copy if this install has one, else the checkout's web/."""
    return PACKAGED_WEB if PACKAGED_WEB.is_dir() else REPOSITORY_WEB

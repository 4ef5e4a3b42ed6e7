"""The web UI: the page at GET /, its files under GET /static/<version>/<name> (`function.http.web_files` holds
them). The files' URLs carry a hash of every file the page loads, so those answers may be cached for a year; the
page itself is `no-cache` with an ETag. The page's own modules import each other by relative names, which the
shared version prefix keeps working."""

from __future__ import annotations

from litestar import MediaType, Request, Response
from litestar.exceptions import NotFoundException

from function.http.web_files import FILES, INDEX, Asset, WebFiles

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


PAGE_DOCS = dict(summary="The web UI", media_type=MediaType.HTML)


def page(request: Request, web_files: WebFiles) -> Response:
    return _answer(request, web_files.asset(INDEX), "no-cache", PAGE_HEADERS)


def static(request: Request, version: str, name: str, web_files: WebFiles) -> Response:
    name = name.lstrip("/")
    if name not in FILES:
        raise NotFoundException(f"no file {name} in the web UI")
    # Another version (a page from an older revision during a rollout): this one's file, not to be cached.
    cache = IMMUTABLE if version == web_files.version() else "no-cache"
    return _answer(request, web_files.asset(name), cache, {"X-Content-Type-Options": "nosniff"})


def _answer(request: Request, asset: Asset, cache_control: str, headers: dict[str, str]) -> Response:
    common = {"ETag": asset.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding", **headers}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=common)
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(
            asset.gzipped, media_type=asset.media_type, headers={**common, "Content-Encoding": "gzip"}
        )
    return Response(asset.body, media_type=asset.media_type, headers=common)

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
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'",  # the page's forms are sent by script (fetch), never by the browser
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The camera button is `<input capture>`, which opens the phone's camera app and needs no permission: the
    # page itself may use no camera, microphone or location.
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"


PAGE_DOCS = dict(summary="The web UI", media_type=MediaType.HTML)


def page(request: Request, web_files: WebFiles) -> Response:
    return answer(request, web_files.asset(INDEX), "no-cache", PAGE_HEADERS)


def static(request: Request, version: str, name: str, web_files: WebFiles) -> Response:
    name = name.lstrip("/")
    if name not in FILES:
        raise NotFoundException(f"no file {name} in the web UI")
    # Another version (a page from an older revision during a rollout): this one's file, not to be cached.
    cache = IMMUTABLE if version == web_files.version() else "no-cache"
    return answer(request, web_files.asset(name), cache, {"X-Content-Type-Options": "nosniff"})


def answer(request: Request, asset: Asset, cache_control: str, headers: dict[str, str]) -> Response:
    common = {"ETag": asset.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding", **headers}
    if none_match(request.headers.get("if-none-match", ""), asset.etag):
        return Response(b"", status_code=304, headers=common)
    if asset.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding", "")):
        return Response(
            asset.gzipped, media_type=asset.media_type, headers={**common, "Content-Encoding": "gzip"}
        )
    return Response(asset.body, media_type=asset.media_type, headers=common)


def none_match(header: str, etag: str) -> bool:
    """Whether If-None-Match names `etag` (RFC 9110 13.1.2: `*`, or a list of tags compared weakly)."""
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


def accepts_gzip(header: str) -> bool:
    """Whether Accept-Encoding allows gzip (RFC 9110 12.5.3): named with a q above 0, or not named and `*` is."""
    weights = {}
    for item in header.lower().split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        q = next((param.removeprefix("q=") for param in params if param.startswith("q=")), "1")
        try:
            weights[coding] = float(q)
        except ValueError:
            weights[coding] = 0.0
    return weights.get("gzip", weights.get("*", 0.0)) > 0

"""The API documentation: Swagger UI at GET /schema/swagger (and /schema), over the OpenAPI document at
/schema/openapi.json (and .yaml). Swagger UI's files come from npm (swagger-ui-dist, in web/package.json) and are
served by the function itself under /schema/static/<version>/, whether the page is on or off (WEB_UI): Litestar's
own pages load theirs from a CDN, which leaves them blank offline and runs another host's scripts on the origin that
holds the UI's client id. The page has no inline script (security_headers gives it its policy). An install
without those files answers a page that says where the document is and how to get the files."""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request, Response
from litestar.exceptions import NotFoundException
from litestar.handlers import get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.router import Router

from function.http.routes import web
from function.http.web_files import DOCS_FILES, WebFiles

PATH = "/schema"
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{static}/swagger-ui.css">
<script defer src="{static}/swagger-ui-bundle.js"></script>
<script defer src="{static}/api-docs.js"></script>
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
</body>
</html>
"""
WITHOUT_FILES = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
<p>The OpenAPI document is at <a href="{openapi}">{openapi}</a> (and <a href="{yaml}">{yaml}</a>).</p>
<p>Its interactive page needs Swagger UI's files, which this install does not have: {hint}.</p>
</body>
</html>
"""


class SwaggerPage(OpenAPIRenderPlugin):
    """Swagger UI from the function's own files (`web_files`)."""

    def __init__(self, web_files: WebFiles, path: str = "/swagger") -> None:
        super().__init__(path=path)
        self.web_files = web_files

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        title = escape(str(openapi_schema["info"]["title"]))
        openapi = f"{PATH}/openapi.json"
        if not self.web_files.installed(DOCS_FILES):
            hint = escape(self.web_files.hint)
            return WITHOUT_FILES.format(
                title=title, openapi=openapi, yaml=f"{PATH}/openapi.yaml", hint=hint
            ).encode()
        static = f"{PATH}/static/{self.web_files.version(DOCS_FILES)}"
        return PAGE.format(title=title, static=static, openapi=openapi).encode()

    def receive_router(self, router: Router) -> None:
        router.register(get("/static/{version:str}/{name:path}", sync_to_thread=True)(static))


def static(request: Request, version: str, name: str, web_files: WebFiles) -> Response:
    name = name.lstrip("/")
    if name not in DOCS_FILES:
        raise NotFoundException(f"no file {name} in the API documentation")
    cache = web.IMMUTABLE if version == web_files.version(DOCS_FILES) else "no-cache"
    return web.answer(request, web_files.asset(name), cache, {"X-Content-Type-Options": "nosniff"})


def openapi_config(web_files: WebFiles) -> OpenAPIConfig:
    """Litestar's default document (its title and version included), with Swagger UI as the only page."""
    return OpenAPIConfig(
        title="Litestar API",
        version="1.0.0",
        path=PATH,
        render_plugins=[SwaggerPage(web_files), YamlRenderPlugin()],
    )

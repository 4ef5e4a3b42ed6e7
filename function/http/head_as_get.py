"""HEAD answered as GET, without the body (a pure ASGI middleware). Litestar routes no HEAD, but uptime checkers
and `curl -I` ask it: they get GET's status and headers, and uvicorn, which knows the request was a HEAD, sends
no body."""

from __future__ import annotations


class HeadAsGet:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)

"""HTTP request metrics (a pure ASGI middleware, in front of admission control): each answer counted once, with
the status the client was sent, under the route's template (`function.http.routing`); `function.metrics` says why
not Litestar's own middleware. A request whose client left before any answer began is counted as 499, nginx's
"client closed request": it is in the totals, and no status of ours is claimed for it."""

from __future__ import annotations

import time

from function import metrics
from function.http.routing import route_of

CLIENT_CLOSED = 499


class RequestMetrics:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], route_of(scope).template
        in_progress = metrics.HTTP_IN_PROGRESS.labels(method, path, metrics.APP_NAME)
        in_progress.inc()
        started = time.perf_counter()
        status = CLIENT_CLOSED

        async def observed(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            if status == CLIENT_CLOSED:  # nothing sent yet: uvicorn answers 500
                status = 500
            raise
        finally:
            in_progress.dec()
            metrics.count_answer(method, path, status, time.perf_counter() - started)

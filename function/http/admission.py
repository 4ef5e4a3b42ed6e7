"""Admission control (a pure ASGI middleware, in front of Litestar): at most `limit` requests that do inference
(POST /predict, /predict/batch, / and /v2/.../infer) are in the app at once.

One more is answered 503 with Retry-After after a short pause (SHED_DELAY_SECONDS, a timer: no work), from bytes
built in advance: no body read, and its connection closes after the answer if it had a body, so nobody
reads megabytes that will not be used (and a client that ignores Retry-After pays a new connection for its next
try). Memory is bounded by what is admitted, not by how many clients connect. The cheap GETs (/health above all:
a probe must get its answer under load) are not counted. Why these choices, measured: docs/tuning.md.

Which requests are counted is decided on the route a request will reach (`counted`: `function.http.routing`), so
every spelling the router accepts (`/predict/`, `//predict`) is counted like `/predict`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from function import metrics
from function.http.asgi_answers import problem_json, send_problem

# Refusals held on their pause at once; past this they are answered at once. A held connection keeps up to
# 64 KiB of its unread body in uvicorn's buffer (its flow control stops reading there): 256 hold at most 16 MiB.
MAX_HELD_REFUSALS = 256


def has_body(scope: dict) -> bool:
    for name, value in scope["headers"]:
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            return True
    return False


class Admission:
    def __init__(self, app, counted: Callable[[dict], bool], limit: int, shed_delay_s: float = 0.0,
                 max_held: int = MAX_HELD_REFUSALS):  # fmt: skip
        self.app, self.counted, self.limit, self.shed_delay_s, self.max_held = (
            app,
            counted,
            limit,
            shed_delay_s,
            max_held,
        )
        self.admitted = 0  # only the event loop touches these
        self.held = 0
        self._shed_body = problem_json(503, "At capacity", f"this instance is answering as many requests as it can "
                                       f"({limit} at once, MAX_CONCURRENT_REQUESTS); retry in a second")  # fmt: skip

    async def __call__(self, scope, receive, send) -> None:
        if not self.counted(scope):
            return await self.app(scope, receive, send)
        if self.admitted >= self.limit:
            return await self._shed(scope, send)
        self.admitted += 1
        slot = _Slot(self, send)
        try:
            await self.app(scope, receive, slot.send)
        finally:
            slot.release()

    async def _shed(self, scope, send) -> None:
        metrics.SHED_REQUESTS.inc()
        if self.shed_delay_s and self.held < self.max_held:
            # A timer, no work: a client that asks again at once cannot make refusing its main work
            self.held += 1
            try:
                await asyncio.sleep(self.shed_delay_s)
            finally:
                self.held -= 1
        await send_problem(send, 503, self._shed_body, has_body(scope), (b"retry-after", b"1"))


class _Slot:
    """An admitted request's place, given back as its answer's last bytes go out, not when the app returns
    (Litestar still has work after it): else a client that sends its next request at once could find its own
    slot taken."""

    def __init__(self, door: Admission, send):
        self.door, self._send = door, send
        self.holding = True

    def release(self) -> None:
        if self.holding:
            self.holding = False
            self.door.admitted -= 1

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.release()
        await self._send(message)

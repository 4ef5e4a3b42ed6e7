"""Slow request bodies (a pure ASGI middleware, inside admission control, over the requests it counts): a body
that stops arriving for `idle_s` is answered 408; one still arriving after `slow_after_s` counts as slow, and at
most `slow_limit` may be slow at once (a further slow one gets its 408 at once), so clients that trickle can hold
at most that many of the admitted slots. The app sees a disconnect and answers an error of its own, which is
dropped: the 408 goes instead, once the app is done."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from function import metrics
from function.http.asgi_answers import problem_json, send_problem

TIMEOUT_BODY = problem_json(
    408, "Upload too slow", "the request body stopped arriving or came too slowly; send it again"
)


class SlowBodies:
    def __init__(
        self, app, counted: Callable[[dict], bool], idle_s: float, slow_after_s: float, slow_limit: int
    ):
        self.app, self.counted = app, counted
        self.idle_s, self.slow_after_s, self.slow_limit = idle_s, slow_after_s, slow_limit
        self.slow = 0  # only the event loop touches it

    async def __call__(self, scope, receive, send) -> None:
        if not self.counted(scope):
            return await self.app(scope, receive, send)
        upload = _Upload(self, receive, send)
        try:
            await self.app(scope, upload.receive, upload.send)
        finally:
            upload.done()
        if upload.timed_out:
            metrics.SLOW_UPLOADS.inc()
            await send_problem(send, 408, TIMEOUT_BODY, True)


class _Upload:
    """One request's body, read under the rules above."""

    def __init__(self, rules: SlowBodies, receive, send):
        self.rules, self._receive, self._send = rules, receive, send
        self.started = time.monotonic()
        self.body_done = False
        self.slow = False
        self.timed_out = False

    def done(self) -> None:
        if self.slow:
            self.slow = False
            self.rules.slow -= 1

    async def receive(self) -> dict:
        if self.timed_out:
            return {"type": "http.disconnect"}
        if self.body_done:
            return await self._receive()
        if not self.slow and time.monotonic() - self.started > self.rules.slow_after_s:
            if self.rules.slow >= self.rules.slow_limit:
                return self._time_out()
            self.slow = True
            self.rules.slow += 1
        try:
            async with asyncio.timeout(self.rules.idle_s):
                message = await self._receive()
        except TimeoutError:
            return self._time_out()
        self.body_done = not message.get("more_body", False)
        return message

    def _time_out(self) -> dict:
        self.timed_out = True
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        if not self.timed_out:  # else the app's answer to the disconnect: the 408 goes instead
            await self._send(message)

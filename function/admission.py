"""The front door: what every request meets before Litestar routes it (a pure ASGI layer, outermost).

- Admission: at most `limit` requests that do inference (POST /predict, /predict/batch, / and /v2/.../infer) are
  in the app at once. One more is answered 503 with Retry-After after a short pause (SHED_DELAY_SECONDS, a
  timer: no work), from bytes built in advance: no routing, no body read, and its connection closes after the
  answer if it had a body, so nobody reads megabytes that will not be used. (A client that ignores Retry-After also pays a new connection for its next
  try: keeping small bodies' connections open let wrk ask 3.5 times as often and halved what was answered.)
  Memory is bounded by what is admitted, not by how many clients connect. The cheap GETs (/health above all: a
  probe must get its answer under load) are not counted.
- Slow bodies: an admitted request whose body stops arriving for `idle_s` is answered 408; one still arriving
  after `slow_after_s` counts as slow, and at most half the slots may be slow at once (a further slow one gets its
  408 at once), so clients that trickle can hold at most half of the instance.
- Security headers on every answer, the app's own (the page's CSP, say) kept where it set them.
- HEAD is answered as GET, without the body."""

from __future__ import annotations

import asyncio
import json
import time

from function import metrics

# What a security review expects of an API's answers. The page sets its own CSP and framing rules (routes.web),
# which take precedence: only the names an answer lacks are added. No HSTS: TLS ends at the ingress, which sets it.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
# An HTML answer without a CSP of its own (Litestar's OpenAPI pages under /schema, which load their scripts from
# a CDN) gets only the framing rule: `default-src 'none'` would blank it.
HTML_CSP = (b"content-security-policy", b"frame-ancestors 'none'")


def problem_json(status: int, title: str, detail: str) -> bytes:
    return json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()


def _head(status: int, body: bytes, close: bool, *extra: tuple[bytes, bytes]) -> dict:
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
               *extra, *SECURITY_HEADERS, *([(b"connection", b"close")] if close else [])]  # fmt: skip
    return {"type": "http.response.start", "status": status, "headers": headers}


# Refusals held on their pause at once; past this they are answered at once. A held connection keeps up to
# 64 KiB of its unread body in uvicorn's buffer (its flow control stops reading there): 256 hold at most 16 MiB.
MAX_HELD_REFUSALS = 256

DOORS = frozenset(("/predict", "/predict/batch", "/"))


def counted(scope: dict) -> bool:
    """The doors that decode and run the model (a batch is one request: it queues its own images)."""
    if scope["method"] != "POST":
        return False
    path = scope["path"]
    return path in DOORS or (path.startswith("/v2/") and path.endswith("/infer"))


def has_body(scope: dict) -> bool:
    for name, value in scope["headers"]:
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            return True
    return False


class Admission:
    def __init__(self, app, limit: int, idle_s: float, slow_after_s: float, shed_delay_s: float = 0.0,
                 max_held: int = MAX_HELD_REFUSALS):  # fmt: skip
        self.app, self.limit, self.idle_s, self.slow_after_s = app, limit, idle_s, slow_after_s
        self.shed_delay_s, self.max_held = shed_delay_s, max_held
        self.held = 0
        self.slow_limit = max(1, limit // 2)
        self.admitted = 0  # only the event loop touches these
        self.slow = 0
        self._shed_body = problem_json(503, "At capacity", f"this instance is answering as many requests as it can "
                                   f"({limit} at once, MAX_CONCURRENT_REQUESTS); retry in a second")  # fmt: skip
        self._timeout_body = problem_json(408, "Upload too slow", "the request body stopped arriving or came too "
                                      "slowly; send it again")  # fmt: skip
        self._retry_after = (b"retry-after", b"1")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "HEAD":
            # Litestar routes no HEAD, but uptime checkers and `curl -I` ask it: GET's answer, whose body uvicorn
            # does not send (it knows the request was a HEAD)
            scope = {**scope, "method": "GET"}
        if not counted(scope):
            return await self.app(scope, receive, secured(send))
        if self.admitted >= self.limit:
            return await self._shed(scope, send)
        self.admitted += 1
        await _Admitted(self, receive, send).run(scope)

    async def _shed(self, scope, send) -> None:
        metrics.SHED_REQUESTS.inc()
        if self.shed_delay_s and self.held < self.max_held:
            # A timer, no work: a client that asks again at once cannot make refusing its main work
            self.held += 1
            try:
                await asyncio.sleep(self.shed_delay_s)
            finally:
                self.held -= 1
        await send(_head(503, self._shed_body, has_body(scope), self._retry_after))
        await send({"type": "http.response.body", "body": self._shed_body})

    async def timed_out(self, send) -> None:
        metrics.SLOW_UPLOADS.inc()
        await send(_head(408, self._timeout_body, True))
        await send({"type": "http.response.body", "body": self._timeout_body})


class _Admitted:
    """One admitted request, holding its slot: its body read under the slow-body rules, its answer given the
    security headers, and replaced by a 408 if the body timed out (the app then sees a disconnect and answers an
    error of its own). The slot is given back as the answer's last bytes go out, not when the app returns (Litestar
    still has work after it): else a client that sends its next request at once could find its own slot taken."""

    def __init__(self, door: Admission, receive, send):
        self.door, self._receive, self._send = door, receive, send
        self.started = time.monotonic()
        self.body_done = False
        self.slow = False
        self.timed_out = False
        self.holding = True

    async def run(self, scope) -> None:
        try:
            await self.door.app(scope, self.receive, self.send)
        finally:
            self.release()
        if self.timed_out:
            await self.door.timed_out(self._send)

    def release(self) -> None:
        if self.holding:
            self.holding = False
            self.door.admitted -= 1
            self.door.slow -= self.slow

    async def receive(self) -> dict:
        if self.body_done or self.timed_out:
            return await self._receive() if not self.timed_out else {"type": "http.disconnect"}
        if not self.slow and time.monotonic() - self.started > self.door.slow_after_s:
            if self.door.slow >= self.door.slow_limit:
                return self._time_out()
            self.slow = True
            self.door.slow += 1
        try:
            async with asyncio.timeout(self.door.idle_s):
                message = await self._receive()
        except TimeoutError:
            return self._time_out()
        self.body_done = not message.get("more_body", False)
        return message

    def _time_out(self) -> dict:
        self.timed_out = True
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        if self.timed_out:
            return  # the app's answer to the disconnect: the 408 goes instead, once the app is done
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.release()
        await self._send(_add_security_headers(message))


def secured(send):
    async def with_headers(message: dict) -> None:
        await send(_add_security_headers(message))

    return with_headers


def _add_security_headers(message: dict) -> dict:
    if message["type"] != "http.response.start":
        return message
    headers = list(message.get("headers", ()))
    present = {name.lower(): value for name, value in headers}
    html = present.get(b"content-type", b"").startswith(b"text/html")
    for header in SECURITY_HEADERS:
        if header[0] not in present:
            headers.append(HTML_CSP if html and header[0] == HTML_CSP[0] else header)
    return {**message, "headers": headers}

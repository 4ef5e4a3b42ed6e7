"""uvicorn with a drain in front of its graceful shutdown (see `function.lifecycle`).

uvicorn alone closes its listener the moment SIGTERM arrives: connections still in the kernel's accept queue, and
accepted connections whose request has not been read yet, are reset. That is any HTTP server's race, and harmless
only when nobody sends to the process any more, which is what the drain buys time for."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from function import metrics
from function.http.asgi_answers import problem_json
from function.http.security_headers import SECURITY_HEADERS
from function.lifecycle import Shutdown

log = logging.getLogger("function")

CLOSE = (b"connection", b"close")
# Request line and headers, all of them: nginx's default allows 4 buffers of 8 KiB; httptools has no limit at all.
MAX_HEADER_BYTES = 64 * 1024
HEADERS_TOO_LARGE = f"the request line and headers exceed {MAX_HEADER_BYTES // 1024} KiB"
UNPARSED = "(unparsed)"  # the method and path labels of a request uvicorn refused before the app saw it


class HeadersTooLarge(Exception):
    pass


class DrainingServer(uvicorn.Server):
    """The first SIGTERM starts the drain; when it is over (or at a second SIGTERM, or a SIGINT) uvicorn's own
    graceful shutdown runs: listener closed, requests already read answered, then the app's shutdown hooks."""

    def __init__(self, config: uvicorn.Config, lifecycle: Shutdown):
        super().__init__(config)
        self.lifecycle = lifecycle
        self._drain_announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.lifecycle.began
        self.lifecycle.begin()
        self._close_connections_after_each_answer()
        if first and sig == signal.SIGTERM and self.lifecycle.drain_s > 0:
            return  # a signal handler: on_tick does the rest (and the logging) on the event loop
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)  # refreshes the default headers every second
        if self.lifecycle.began and not should_exit:
            if not self._drain_announced:
                self._drain_announced = True
                log.info("SIGTERM: draining for %.1f s (/health answers 503, requests still served)",
                         self.lifecycle.drain_s)  # fmt: skip
            self._close_connections_after_each_answer()  # again: uvicorn has just refreshed its headers
            if self.lifecycle.drain_over():
                self.should_exit = True
        return should_exit

    def _close_connections_after_each_answer(self) -> None:
        """From SIGTERM on, so keep-alive clients reconnect (to a pod that is not going away) instead of finding
        the connection closed under their next request when the drain ends."""
        if CLOSE not in self.server_state.default_headers:
            self.server_state.default_headers = [*self.server_state.default_headers, CLOSE]


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit on a request's headers.

    A connection whose headers trickle in holds no worker and no admission slot (the app sees a request only once
    its headers are complete), but uvicorn waits for them for ever: any byte cancels its keep-alive timer. So
    from connecting, or from its last answer, a connection has `header_timeout_s` to send the next request's
    headers, else it is closed (as nginx's client_header_timeout does); an idle keep-alive connection is still
    closed sooner by uvicorn's own timer."""

    def __init__(self, *args, header_timeout_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        # Two checks. Bytes received while the headers are still incomplete after parsing: headers that never
        # end (httptools would buffer them without limit). And the parsed headers' own size, once complete: one
        # read (up to 256 KiB) can hold both large headers and small ones with the start of a large body.
        if self._header_timer is not None:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._header_timer is not None and self._header_bytes > MAX_HEADER_BYTES:
            self.send_400_response(HEADERS_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEADER_BYTES:
            self.send_400_response(HEADERS_TOO_LARGE)
            raise HeadersTooLarge  # stops the parser (uvicorn's own 400 that follows finds the connection closing)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:  # no pipelined request in hand
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's own 400, for bytes httptools cannot parse or headers past the limit, answered as the app
        answers: a problem detail with the security headers (uvicorn's is plain text with neither). One per
        connection: the first reason given is the one sent."""
        if self.transport.is_closing():
            return
        metrics.count_answer(UNPARSED, UNPARSED, 400, 0.0)  # the app never saw it: counted here
        body = problem_json(400, "Bad Request", msg)
        headers = [*(h for h in self.server_state.default_headers if h != CLOSE),
                   (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
                   *SECURITY_HEADERS, CLOSE]  # fmt: skip
        lines = [
            b"HTTP/1.1 400 Bad Request\r\n",
            *(name + b": " + value + b"\r\n" for name, value in headers),
        ]
        self.transport.write(b"".join([*lines, b"\r\n", body]))
        self.transport.close()

    def _await_headers(self) -> None:
        self._stop_waiting()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _stop_waiting(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._header_bytes = 0

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

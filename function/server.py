"""uvicorn with a drain in front of its graceful shutdown (see `function.lifecycle`).

uvicorn alone closes its listener the moment SIGTERM arrives: connections still in the kernel's accept queue, and
accepted connections whose request has not been read yet, are reset. That is any HTTP server's race, and harmless
only when nobody sends to the process any more, which is what the drain buys time for."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn

from function.lifecycle import Shutdown

log = logging.getLogger("function")

CLOSE = (b"connection", b"close")


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

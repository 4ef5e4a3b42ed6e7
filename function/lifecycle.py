"""Shutdown as Kubernetes and Knative run it: one grace period between SIGTERM and SIGKILL, spent in order on

1. the drain: `/health` answers 503 at once, but the listener stays open and requests are served (each answer
   closes its connection), so a load balancer that still sends here while it learns of the 503 loses nothing;
2. the requests already read: answered, slow bodies included (uvicorn's graceful shutdown);
3. the prediction log: rows still queued are written.

No web framework here: the server (`function.http.server`) and the app both read this one object."""

from __future__ import annotations

import time
from dataclasses import dataclass

LOG_FLUSH_RESERVE_S = 5.0  # kept back for the prediction log, whatever the requests take
SIGKILL_MARGIN_S = 1.0  # finish this long before the grace period ends, not on its last tick


class BudgetTooSmall(ValueError):
    """The grace period does not fit the drain plus the time kept for requests and the log."""


@dataclass
class Shutdown:
    grace_s: float = 30.0  # Kubernetes' default terminationGracePeriodSeconds
    drain_s: float = 0.0
    began_at: float | None = None  # time.monotonic() of the first SIGTERM

    def __post_init__(self) -> None:
        if self.drain_s < 0:
            raise BudgetTooSmall(f"SHUTDOWN_DRAIN_SECONDS must be 0 or more (got {self.drain_s})")
        if self.request_timeout_s < 1:
            raise BudgetTooSmall(
                f"SHUTDOWN_GRACE_SECONDS={self.grace_s:g} leaves no time for requests: it must exceed "
                f"SHUTDOWN_DRAIN_SECONDS ({self.drain_s:g}) + {LOG_FLUSH_RESERVE_S:g} s for the log + "
                f"{SIGKILL_MARGIN_S:g} s margin by at least 1 s"
            )

    @property
    def request_timeout_s(self) -> float:
        """How long in-flight requests may take once the listener is closed."""
        return self.grace_s - self.drain_s - LOG_FLUSH_RESERVE_S - SIGKILL_MARGIN_S

    @property
    def began(self) -> bool:
        return self.began_at is not None

    def begin(self) -> None:
        if self.began_at is None:
            self.began_at = time.monotonic()

    def drain_over(self) -> bool:
        return self.began_at is not None and time.monotonic() >= self.began_at + self.drain_s

    def log_flush_timeout_s(self) -> float:
        """What is left of the grace period for the log (all of the reserve when shutdown came without SIGTERM)."""
        if self.began_at is None:
            return LOG_FLUSH_RESERVE_S
        left = self.began_at + self.grace_s - SIGKILL_MARGIN_S - time.monotonic()
        return max(left, 0.5)

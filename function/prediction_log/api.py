"""What the rest of the function sees of the prediction log: the `PredictionLog` protocol (a PostgreSQL log, or
none) and the two errors a read of it can raise."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from function.prediction_log.quality_queries import DriftCounts, ShadowPairs
from function.prediction_log.queries import HistoryItem, VersionStats
from function.prediction_log.schema import Feedback, Issued, Row, ShadowRow

# An event's row is written before the event is answered, so that a redelivery to any instance finds it; a
# database slower than this costs the answer no more, and the row goes through the queue instead.
EVENT_WRITE_TIMEOUT_S = 2.0


class LogDisabled(RuntimeError):
    """A read of the log while logging is off (no DATABASE_URL)."""


class LogUnavailable(RuntimeError):
    """The log's database cannot answer a read now (down, restarting, or slow)."""


@runtime_checkable
class PredictionLog(Protocol):
    def record(self, row: Row) -> None:
        """Queue `row` for writing; never blocks, never raises."""

    def record_shadow(self, row: ShadowRow) -> None:
        """Queue a shadow model's answer (its own queue and table); never blocks, never raises."""

    async def record_once(self, row: Row) -> Row:
        """An event's row: written now, or the row already logged for its (event_source, event_id). With the
        database out of reach within EVENT_WRITE_TIMEOUT_S, `row` is queued like any other (a duplicate is
        then dropped when it is written) and returned. Never raises."""

    async def find_event(self, source: str, event_id: str) -> Row | None:
        """The row logged for an event, if any: None also when the database cannot say within
        EVENT_WRITE_TIMEOUT_S. Never raises."""

    async def start(self) -> None: ...

    async def stop(self, timeout_s: float) -> None:
        """Write what is queued within `timeout_s`, then close."""

    async def stats(self, since: datetime | None = None, until: datetime | None = None) -> list[VersionStats]:
        """Aggregates per (model version, revision), over predictions in [since, until)."""

    async def history(
        self, client_id: str, limit: int, before: datetime | None, before_id: uuid.UUID | None = None
    ) -> list[HistoryItem]:
        """A client's newest predictions after the cursor (the last page's time and id), with their feedback."""

    async def issued(self, prediction_id: uuid.UUID) -> Issued | None:
        """Whether the service ever made `prediction_id`, and for whom (None: never)."""

    async def save_feedback(self, feedback: Feedback) -> None:
        """Written now, or kept and retried; never raises."""

    async def shadow_pairs(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[ShadowPairs]:
        """The served model's and the shadow's answers to the same images, per pair of versions, in [since, until)."""

    async def drift(self, recent_since: datetime, recent_until: datetime, reference_span: timedelta,
                    reference_since: datetime | None = None,
                    reference_until: datetime | None = None) -> list[DriftCounts]:  # fmt: skip
        """Per (version, revision): predicted classes and confidence bins in a reference window (by default the
        version's first `reference_span`) and in [recent_since, recent_until)."""

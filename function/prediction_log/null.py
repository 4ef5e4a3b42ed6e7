"""Logging off (no DATABASE_URL): rows are discarded, and reads say why there is nothing to read."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from function.prediction_log.api import LogDisabled
from function.prediction_log.quality_queries import DriftCounts, ShadowPairs
from function.prediction_log.queries import HistoryItem, VersionStats
from function.prediction_log.schema import Feedback, Issued, Row, ShadowRow

log = logging.getLogger("function.prediction_log")

OFF = "the prediction log is off: DATABASE_URL is not set, so predictions are not kept"


class NullLog:
    """Logging off (no DATABASE_URL): rows are discarded, reads raise `LogDisabled`."""

    def __init__(self) -> None:
        self._warned = False

    def record(self, row: Row) -> None:
        pass

    def record_shadow(self, row: ShadowRow) -> None:
        pass

    async def record_once(self, row: Row) -> Row:
        return row

    async def find_event(self, source: str, event_id: str) -> Row | None:
        return None

    async def start(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("DATABASE_URL is not set: predictions are not logged")

    async def stop(self, timeout_s: float) -> None:
        pass

    async def stats(self, since: datetime | None = None, until: datetime | None = None) -> list[VersionStats]:
        raise LogDisabled(OFF)

    async def history(
        self, client_id: str, limit: int, before: datetime | None, before_id: uuid.UUID | None = None
    ) -> list[HistoryItem]:
        raise LogDisabled(OFF)

    async def issued(self, prediction_id: uuid.UUID) -> Issued | None:
        raise LogDisabled(OFF)

    async def save_feedback(self, feedback: Feedback) -> None:
        raise LogDisabled(OFF)

    async def shadow_pairs(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[ShadowPairs]:
        raise LogDisabled(OFF)

    async def drift(self, recent_since: datetime, recent_until: datetime, reference_span: timedelta,
                    reference_since: datetime | None = None,
                    reference_until: datetime | None = None) -> list[DriftCounts]:  # fmt: skip
        raise LogDisabled(OFF)

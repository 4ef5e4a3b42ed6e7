"""Feedback on predictions, written when it is given, and kept and retried when the database is out of reach:
nothing a person said is lost to an outage (within the process's life; SIGTERM flushes what is left)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from function.prediction_log.queries import save_feedback
from function.prediction_log.schema import Feedback

log = logging.getLogger(__name__)

RETRY_S = (0.5, 1.0, 2.0, 5.0)  # then every 5 s


class FeedbackWriter:
    """`database` has `connection()`, an async context manager (opening and migrating on first use)."""

    def __init__(self, database, timeout_s: float):
        self._database, self._timeout_s = database, timeout_s
        self._pending: dict[uuid.UUID, Feedback] = {}  # a prediction's latest word, not yet written
        self._retrying: asyncio.Task | None = None

    async def save(self, feedback: Feedback) -> None:
        """Never raises: written now, or kept and retried (the newer word wins either way)."""
        try:
            await self._write(feedback)
        except Exception as exc:
            log.warning("prediction log: feedback on %s kept for a retry (%r)", feedback.prediction_id, exc)
            self._keep(feedback)

    async def flush(self, timeout_s: float) -> None:
        """Try what is kept once more, within `timeout_s`, then stop retrying."""
        if self._retrying is not None:
            self._retrying.cancel()
        try:
            async with asyncio.timeout(timeout_s):
                await self._write_kept()
        except Exception as exc:
            log.error("prediction log: feedback not written before shutdown (%r): %s", exc,
                      list(self._pending.values()))  # fmt: skip

    def _keep(self, feedback: Feedback) -> None:
        kept = self._pending.get(feedback.prediction_id)
        if kept is None or kept.at <= feedback.at:
            self._pending[feedback.prediction_id] = feedback
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry(), name="prediction-log-feedback")

    async def _retry(self) -> None:
        attempt = 0
        while self._pending:
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1
            try:
                await self._write_kept()
            except Exception as exc:
                log.warning("prediction log: %d feedback still not written (%r)", len(self._pending), exc)

    async def _write_kept(self) -> None:
        for feedback in list(self._pending.values()):
            await self._write(feedback)
            if self._pending.get(feedback.prediction_id) is feedback:
                del self._pending[feedback.prediction_id]

    async def _write(self, feedback: Feedback) -> None:
        async with asyncio.timeout(self._timeout_s), self._database.connection() as conn:
            await save_feedback(conn, feedback)

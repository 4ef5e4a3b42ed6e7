"""The prediction log in PostgreSQL: the writer (`writer`), event claims (`claims`), feedback (`feedback`) and the
UI's reads (`queries`) over one connection pool, opened and the schema migrated on first use: psycopg and its
pool are imported only on the first row or the first read, so a cold start's first answer does not share the CPU
with them. A slow or stopped database never fails or slows a prediction."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from function.prediction_log import quality_queries, queries, schema, writer
from function.prediction_log.api import EVENT_WRITE_TIMEOUT_S, LogUnavailable
from function.prediction_log.claims import EventClaims
from function.prediction_log.feedback import FeedbackWriter
from function.prediction_log.quality_queries import DriftCounts, ShadowPairs
from function.prediction_log.queries import HistoryItem, VersionStats
from function.prediction_log.schema import SHADOW_PREDICTIONS, Feedback, Issued, Row, ShadowRow
from function.prediction_log.writer import Writer

log = logging.getLogger("function.prediction_log")


class PostgresLog:
    """The writer and the reads over one connection pool."""

    def __init__(self, url: str, capacity: int = 10_000, batch_size: int = 256):
        self._database = _Database(url)
        self._writer = Writer(self._database.writes, capacity, batch_size)
        # A shadow model's answers queue apart: they can never take a served prediction's place in the queue.
        self._shadow_writer = Writer(self._database.writes, capacity, batch_size, SHADOW_PREDICTIONS)
        self._events = EventClaims(self._database, EVENT_WRITE_TIMEOUT_S)
        self._feedback = FeedbackWriter(self._database.requests, EVENT_WRITE_TIMEOUT_S)

    def record(self, row: Row) -> None:
        self._writer.put(row)

    def record_shadow(self, row: ShadowRow) -> None:
        self._shadow_writer.put(row)

    async def record_once(self, row: Row) -> Row:
        # Down, slow, or refusing: the writer's queue retries, and sets aside what it must.
        try:
            logged = await self._events.claim(row)
        except Exception as exc:
            log.warning("prediction log: event %r from %r queued, not written now (%r)", row.event_id,
                        row.event_source, exc)  # fmt: skip
            self.record(row)
            return row
        if logged.id == row.id:
            writer.WRITTEN.inc()
        return logged

    async def find_event(self, source: str, event_id: str) -> Row | None:
        try:
            async with asyncio.timeout(EVENT_WRITE_TIMEOUT_S), self._database.requests.connection() as conn:
                return await queries.by_event(conn, source, event_id)
        except Exception as exc:
            log.warning("prediction log: could not look up event %r from %r (%r)", event_id, source, exc)
            return None

    async def start(self) -> None:
        # Nothing here waits for the database: one that is down or slow at start must not keep the function
        # from serving.
        self._writer.start()
        self._shadow_writer.start()

    async def stop(self, timeout_s: float) -> None:
        """Flush what is queued within `timeout_s`, then close (SIGTERM: Knative's grace period)."""
        await asyncio.gather(self._writer.stop(timeout_s), self._shadow_writer.stop(timeout_s))
        await self._feedback.flush(min(timeout_s, EVENT_WRITE_TIMEOUT_S))
        await self._events.close()
        await self._database.close()

    async def history(
        self, client_id: str, limit: int, before: datetime | None, before_id: uuid.UUID | None = None
    ) -> list[HistoryItem]:
        async with self._reading() as conn:
            return await queries.history(conn, client_id, limit, before, before_id)

    async def issued(self, prediction_id: uuid.UUID) -> Issued | None:
        async with self._reading() as conn:
            return await queries.issued(conn, prediction_id)

    async def save_feedback(self, feedback: Feedback) -> None:
        await self._feedback.save(feedback)

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator:
        """A connection for a read the UI waits on: LogUnavailable (503) rather than a hang or a 500."""
        import psycopg

        try:
            async with asyncio.timeout(EVENT_WRITE_TIMEOUT_S), self._database.requests.connection() as conn:
                yield conn
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise LogUnavailable(
                f"the prediction log's database did not answer ({type(exc).__name__})"
            ) from exc

    async def stats(self, since: datetime | None = None, until: datetime | None = None) -> list[VersionStats]:
        async with self._reading() as conn:
            return await queries.stats(conn, since, until)

    async def shadow_pairs(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[ShadowPairs]:
        async with self._reading() as conn:
            return await quality_queries.shadow_pairs(conn, since, until)

    async def drift(self, recent_since: datetime, recent_until: datetime, reference_span: timedelta,
                    reference_since: datetime | None = None,
                    reference_until: datetime | None = None) -> list[DriftCounts]:  # fmt: skip
        async with self._reading() as conn:
            return await quality_queries.drift_counts(conn, recent_since, recent_until, reference_span, reference_since,
                                              reference_until)  # fmt: skip


# psycopg_pool backs off 1, 2, 4, 8 ... s for 5 minutes after an outage, so rows waited up to 30 s after the database
# was back; giving up a try sequence after 10 s lets the writer's next request start a new one (docs/tuning.md).
RECONNECT_GIVE_UP_S = 10.0


class _Database:
    """The log's connections, opened and the schema migrated on first use: the writer's own (`writes`), which no
    read can take, and two for what requests ask (`requests`: the UI's reads, feedback, event look-ups), each read
    bounded by its deadline. Event claims open a connection of their own (`claims`)."""

    def __init__(self, url: str):
        self.url = url
        self.writes = _Pool(self, size=1)
        self.requests = _Pool(self, size=2)
        self._migrated = False
        self._lock = asyncio.Lock()

    async def ready(self) -> None:
        async with self._lock:
            await self.writes.open()
            await self.requests.open()
            if not self._migrated:
                async with self.writes.pool.connection() as conn:
                    applied = await schema.migrate(conn)
                if applied:
                    log.info("prediction log: applied schema migrations %s", applied)
                self._migrated = True

    async def close(self) -> None:
        await self.writes.close()
        await self.requests.close()


class _Pool:
    def __init__(self, database: _Database, size: int):
        self.database, self.size = database, size
        self.pool = None

    async def ready(self) -> None:
        await self.database.ready()

    async def open(self) -> None:
        if self.pool is None:
            pool_module = await asyncio.to_thread(importlib.import_module, "psycopg_pool")
            pool_class = pool_module.AsyncConnectionPool
            self.pool = pool_class(
                self.database.url,
                min_size=1,
                max_size=self.size,
                open=False,
                timeout=5,
                check=pool_class.check_connection,
                reconnect_timeout=RECONNECT_GIVE_UP_S,
            )  # kept before opening, so close() closes it even if cancelled mid-open
            await self.pool.open(wait=False)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator:
        await self.database.ready()
        async with self.pool.connection() as conn:
            yield conn

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

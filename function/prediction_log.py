"""The prediction log: every prediction becomes one PostgreSQL row, written off the request path.

`record()` only appends to a bounded in-memory queue; a background task inserts in batches. A slow or stopped
database never fails or slows a prediction: the batch in hand is retried with back-off until the database is
back, and rows wait in the queue. Rows are dropped only when the queue is full, and counted."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

QUEUE_DEPTH = Gauge("prediction_log_queue_depth", "Predictions waiting to be written to PostgreSQL")
WRITTEN = Counter("prediction_log_rows_written_total", "Prediction rows written to PostgreSQL")
WRITE_FAILURES = Counter("prediction_log_write_failures_total", "Failed attempts to write a batch")
DROPPED = Counter("prediction_log_dropped_total", "Prediction rows dropped because the queue was full")

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    image_sha256 text NOT NULL,
    predicted_class text NOT NULL,
    confidence real NOT NULL,
    probabilities jsonb NOT NULL,
    model_name text NOT NULL,
    model_version text NOT NULL,
    revision text,
    latency_ms real NOT NULL,
    source text NOT NULL,
    request_id text
);
CREATE INDEX IF NOT EXISTS predictions_created_at ON predictions (created_at);
"""
COLUMNS = ("id", "created_at", "image_sha256", "predicted_class", "confidence", "probabilities", "model_name",
           "model_version", "revision", "latency_ms", "source", "request_id")  # fmt: skip
# COPY, because psycopg formats its rows in C: INSERT parameters are adapted in Python on the event loop, a
# quarter of the loop's time at 250 predictions/s.
COPY = f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN"
# A batch retried after a commit whose answer was lost would fail COPY on its own rows: that case, and only
# that one, goes row by row and skips rows already there.
INSERT = (
    f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    "ON CONFLICT (id) DO NOTHING"
)
LINGER_S = 0.05  # after the first row, wait this long for more: batches, not a round trip a prediction


@dataclass(frozen=True)
class Row:
    id: uuid.UUID
    created_at: datetime
    image_sha256: str
    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    model_name: str
    model_version: str
    revision: str | None
    latency_ms: float
    source: str  # http, event, oip, batch
    request_id: str | None

    def values(self) -> tuple:
        return (self.id, self.created_at, self.image_sha256, self.predicted_class, self.confidence,
                json.dumps(self.probabilities), self.model_name, self.model_version, self.revision,
                self.latency_ms, self.source, self.request_id)  # fmt: skip


class NullLog:
    """Logging off (no DATABASE_URL)."""

    def record(self, row: Row) -> None:
        pass

    async def start(self) -> None:
        log.warning("DATABASE_URL is not set: predictions are not logged")

    async def stop(self, timeout_s: float) -> None:
        pass


class PostgresLog:
    def __init__(self, url: str, capacity: int = 10_000, batch_size: int = 256):
        self._url, self._batch_size = url, batch_size
        self._queue: asyncio.Queue[Row] = asyncio.Queue(maxsize=capacity)
        self._task: asyncio.Task | None = None
        self._pool = None
        self._stopping = False
        QUEUE_DEPTH.set_function(self._queue.qsize)

    def record(self, row: Row) -> None:
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            DROPPED.inc()

    async def start(self) -> None:
        # Nothing here waits for the database: one that is down or slow at start must not keep the function
        # from serving. psycopg is imported (about 80 ms, mostly holding the GIL) only once the first row is
        # queued, so a cold start's first answer does not share the CPU with it.
        self._task = asyncio.create_task(self._write_forever(), name="prediction-log-writer")

    async def _open_pool(self) -> None:
        pool_module = await asyncio.to_thread(importlib.import_module, "psycopg_pool")
        if self._pool is None:  # kept before opening, so stop() closes it even if cancelled mid-open
            self._pool = pool_module.AsyncConnectionPool(
                self._url, min_size=1, max_size=2, open=False, timeout=5
            )
        await self._pool.open(wait=False)

    async def stop(self, timeout_s: float) -> None:
        """Flush what is queued within `timeout_s`, then close (SIGTERM: Knative's grace period)."""
        self._stopping = True
        if self._task:
            try:
                await asyncio.wait_for(asyncio.shield(self._queue.join()), timeout_s)
            except TimeoutError:
                log.error("prediction log: %d rows not written before shutdown", self._queue.qsize())
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pool:
            await self._pool.close()

    async def _write_forever(self) -> None:
        batch = [await self._queue.get()]  # no connection, nor psycopg, before there is a row to write
        await self._retry("opening the connection pool", self._open_pool)
        await self._retry("creating the schema", self._migrate)
        while True:
            if not self._stopping:
                await asyncio.sleep(LINGER_S)
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._retry(f"writing {len(batch)} rows", functools.partial(self._insert, batch))
            WRITTEN.inc(len(batch))
            for _ in batch:
                self._queue.task_done()
            batch = [await self._queue.get()]

    async def _retry(self, what: str, attempt) -> None:
        """Until it succeeds: the database may be down, slow or restarting; the rows wait."""
        backoff = 0.2
        while True:
            try:
                return await attempt()
            except Exception as exc:
                WRITE_FAILURES.inc()
                log.warning("prediction log: %s failed (%s); retrying in %.1f s", what, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0 if self._stopping else 5.0)

    async def _migrate(self) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(SCHEMA)

    async def _insert(self, batch: list[Row]) -> None:
        from psycopg.errors import UniqueViolation

        async with self._pool.connection() as conn:
            try:
                async with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY) as copy:
                    for row in batch:
                        await copy.write_row(row.values())
            except UniqueViolation:
                async with conn.transaction(), conn.cursor() as cursor:
                    await cursor.executemany(INSERT, [row.values() for row in batch])

"""The writer: a bounded queue that one background task drains in batches, each written with one COPY.

`put()` only appends; a full queue drops the row and counts it. Two kinds of failure are told apart, so that
neither stalls the log:

- the database is down, restarting or out of connections (`psycopg.OperationalError`, which includes the pool's
  timeout), or refuses every row alike (read-only after a failover, a privilege or the table gone): the rows in
  hand are kept and retried with back-off while the rest wait in the queue, each failure counted and logged;
- the database refuses something in the batch for its content (a data exception or a constraint, SQLSTATE
  classes 22 and 23): the batch is written again row by row,
  each row in its own transaction. A row whose id is already there was written by an earlier attempt whose
  commit answer was lost; an event's row whose (event_source, event_id) is already there is a redelivery,
  dropped and counted; a row refused on its own is logged at ERROR with its values and set aside."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator

from prometheus_client import Counter, Gauge

from function.prediction_log.schema import PREDICTIONS, Row, ShadowRow, Table

log = logging.getLogger(__name__)

QUEUE_DEPTH = Gauge("prediction_log_queue_depth", "Predictions waiting to be written to PostgreSQL")
WRITTEN = Counter("prediction_log_rows_written_total", "Prediction rows written to PostgreSQL")
WRITE_FAILURES = Counter("prediction_log_write_failures_total", "Failed attempts to write a batch")
DROPPED = Counter("prediction_log_dropped_total", "Prediction rows dropped because the queue was full")
DUPLICATE_EVENTS = Counter(
    "prediction_log_duplicate_events_total",
    "Queued rows not written because their CloudEvent (source, id) was already logged",
)
REJECTED = Counter(
    "prediction_log_rows_rejected_total",
    "Prediction rows the database refused, logged at ERROR and set aside",
)

LINGER_S = 0.05  # after the first row, wait this long for more: batches, not a round trip a prediction


class Writer:
    """`database` has `async ready()` (open and migrate) and `connection()` (an async context manager). `table`:
    where its rows go (the predictions, or a shadow model's answers); the metrics count the predictions' alone."""

    def __init__(self, database, capacity: int, batch_size: int, table: Table = PREDICTIONS):
        self._database, self._batch_size, self._table = database, batch_size, table
        self._counted = table is PREDICTIONS
        self._queue: asyncio.Queue[Row | ShadowRow] = asyncio.Queue(maxsize=capacity)
        self._waiting = 0  # queued or in the batch in hand: rows not yet written or set aside
        self._task: asyncio.Task | None = None
        self._stopping = False
        if self._counted:
            QUEUE_DEPTH.set_function(lambda: self._waiting)

    def put(self, row: Row | ShadowRow) -> None:
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            if self._counted:
                DROPPED.inc()
        else:
            self._waiting += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever(), name="prediction-log-writer")

    async def stop(self, timeout_s: float) -> None:
        """Write what is queued within `timeout_s`, then end the task."""
        self._stopping = True
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._queue.join()), timeout_s)
        except TimeoutError:
            log.error("prediction log: %d rows not written before shutdown", self._waiting)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _write_forever(self) -> None:
        batch = [await self._queue.get()]  # no connection, nor psycopg, before there is a row to write
        await self._until_ready()
        while True:
            if not self._stopping:
                await asyncio.sleep(LINGER_S)
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)
            self._waiting -= len(batch)
            for _ in batch:
                self._queue.task_done()
            batch = [await self._queue.get()]

    async def _until_ready(self) -> None:
        """Nothing can be written before the pool is open and the schema migrated: retry whatever fails."""
        delays = self._delays()
        while True:
            try:
                return await self._database.ready()
            except Exception as exc:
                WRITE_FAILURES.inc()
                await self._back_off(delays, "preparing the database", exc)

    async def _write(self, batch: list[Row]) -> None:
        """Return once every row of `batch` is written or set aside."""
        import psycopg

        pending, by_row, delays = list(batch), False, self._delays()
        while pending:
            try:
                await (self._insert_each(pending) if by_row else self._copy(pending))
            except Exception as exc:
                WRITE_FAILURES.inc()
                # Row by row, only an error no row caused gets here: wait for the database, as for an outage.
                if by_row or isinstance(exc, psycopg.OperationalError) or not _refused_for_content(exc):
                    await self._back_off(delays, f"writing {len(pending)} rows", exc)
                else:
                    log.info("prediction log: %d rows refused together (%s); trying each", len(pending), exc)
                    by_row = True

    async def _copy(self, pending: list[Row]) -> None:
        # COPY, because psycopg formats its rows in C: INSERT parameters are adapted in Python on the event loop,
        # a quarter of the loop's time at 250 predictions/s.
        connection = self._database.connection()
        async with (
            connection as conn,
            conn.transaction(),
            conn.cursor() as cursor,
            cursor.copy(self._table.copy_sql) as copy,
        ):
            for row in pending:
                await copy.write_row(row.values())
        self._written(len(pending))
        pending.clear()

    async def _insert_each(self, pending: list[Row]) -> None:
        """Settle rows from the front of `pending`, removing each one settled; a transient error propagates and
        leaves the unsettled rows there."""
        import psycopg
        from psycopg.errors import UniqueViolation

        settled = 0
        try:
            async with self._database.connection() as conn:
                for row in pending:
                    try:
                        async with conn.transaction():
                            await conn.execute(self._table.insert_sql, row.values())
                        self._written(1)
                    except psycopg.OperationalError:
                        raise
                    except UniqueViolation as exc:
                        if (
                            exc.diag.constraint_name == self._table.primary_key
                        ):  # an earlier attempt's commit answer was lost
                            self._written(1)
                        elif (
                            exc.diag.constraint_name == self._table.event_key
                        ):  # a redelivery, classified while PG was away
                            DUPLICATE_EVENTS.inc()
                        else:
                            _set_aside(row, exc)
                    except Exception as exc:
                        if not _refused_for_content(exc):
                            raise  # the database as a whole: this row and those after it wait
                        _set_aside(row, exc)
                    settled += 1
        finally:
            del pending[:settled]

    def _written(self, rows: int) -> None:
        if self._counted:
            WRITTEN.inc(rows)

    async def _back_off(self, delays: Iterator[float], what: str, exc: Exception) -> None:
        delay = next(delays)
        log.warning(
            "prediction log: %s (%s) failed (%s); retrying in %.1f s", what, self._table.name, exc, delay
        )
        await asyncio.sleep(delay)

    def _delays(self) -> Iterator[float]:
        delay = 0.2
        while True:
            yield delay
            delay = min(delay * 2, 1.0 if self._stopping else 5.0)


def _refused_for_content(exc: Exception) -> bool:
    """A refusal of a row for what it holds (SQLSTATE class 22, data exception; 23, integrity constraint), not
    one every row would get (the table gone, no privilege, a read-only server: classes 25, 42, 57, ...)."""
    return str(getattr(exc, "sqlstate", None) or "")[:2] in ("22", "23")


def _set_aside(row: Row, exc: Exception) -> None:
    """The row is not written: its values go to the log, where they can be found and replayed."""
    REJECTED.inc()
    reason = f"SQLSTATE {exc.sqlstate}" if getattr(exc, "sqlstate", None) else type(exc).__name__
    values = json.dumps(dataclasses.asdict(row), default=str)
    log.error(
        "prediction log: row refused (%s: %s); set aside: %s", reason, " ".join(str(exc).split()), values
    )

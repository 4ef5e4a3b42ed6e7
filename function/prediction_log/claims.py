"""Event rows, written before their events are answered: the database decides which delivery of an event is the
first, so a redelivery to any instance gets the first answer (`queries.insert_once`).

Events that finish while a write is in flight are written together in the next one, over a connection of their
own in autocommit: one round trip a write, no pool check, no separate commit (through the pool an event cost
about 1 ms of CPU more than an upload: docs/tuning.md)."""

from __future__ import annotations

import asyncio
import contextlib

from function.prediction_log.queries import insert_once
from function.prediction_log.schema import Row

MAX_ROWS = 1000  # a statement's rows: 14 parameters each, and PostgreSQL takes at most 65,535


class EventClaims:
    """`database` has `url` and `ready()` (the pool opened and the schema migrated)."""

    def __init__(self, database, timeout_s: float):
        self._database, self._timeout_s = database, timeout_s
        self._waiting: list[tuple[Row, asyncio.Future[Row]]] = []
        self._writing: asyncio.Task | None = None
        self._conn = (
            None  # psycopg.AsyncConnection, autocommit; opened on the first event, again after a loss
        )

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def claim(self, row: Row) -> Row:
        """`row` once written, or the row already logged for its event. Raises what the write raised, or
        TimeoutError after `timeout_s` whatever the write is doing (the caller's deadline, not the write's:
        cancelling a query can take psycopg seconds)."""
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((row, answer))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_while_waiting(), name="prediction-log-events")
        async with asyncio.timeout(self._timeout_s):
            return await asyncio.shield(answer)  # a caller that gives up leaves the write to the others

    async def _write_while_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_ROWS], self._waiting[MAX_ROWS:]
                await self._write(batch)
        finally:
            self._writing = None

    async def _write(self, batch: list[tuple[Row, asyncio.Future[Row]]]) -> None:
        import psycopg

        try:
            logged = await insert_once(await self._connection(), [row for row, _ in batch])
        except (psycopg.OperationalError, TimeoutError) as exc:  # out of reach: every caller falls back
            await self._drop_connection()
            _settle(batch, exc)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch, exc)
            else:  # one row the database refuses must not cost the others their write: each on its own
                for item in batch:
                    await self._write([item])
        except BaseException:  # cancelled (shutdown): the callers fall back, then the task ends
            _settle(batch, RuntimeError("the event write was cancelled"))
            raise
        else:
            for row, answer in batch:
                found = logged.get((row.event_source, row.event_id))
                _settle([(row, answer)], found or LookupError("the event's row vanished after its write"))

    async def _connection(self):
        import psycopg

        if self._conn is None or self._conn.closed:
            await self._database.ready()
            self._conn = await psycopg.AsyncConnection.connect(
                self._database.url, autocommit=True, connect_timeout=max(2, round(self._timeout_s))
            )
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _settle(batch: list[tuple[Row, asyncio.Future[Row]]], result: Row | BaseException) -> None:
    for _, answer in batch:
        if answer.done():  # its caller gave up (timeout, client gone)
            continue
        if isinstance(result, BaseException):
            answer.set_exception(result)
        else:
            answer.set_result(result)

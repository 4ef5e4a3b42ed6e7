"""Event rows, written before their events are answered: the database decides which delivery of an event is the
first, so a redelivery to any instance gets the first answer (`queries.insert_once`).

Events that finish while a write is in flight are written together in the next one, so under load a handful of
events costs one connection check, one statement and one commit instead of one each (measured in this
process: 0.67 ms of the event loop's CPU for an event written alone, 0.10 ms each for eight at a time)."""

from __future__ import annotations

import asyncio

from function.prediction_log import queries
from function.prediction_log.schema import Row

MAX_ROWS = 1000  # a statement's rows: 14 parameters each, and PostgreSQL takes at most 65,535


class EventClaims:
    """`database` has `connection()`, an async context manager (opening and migrating on first use)."""

    def __init__(self, database, timeout_s: float):
        self._database, self._timeout_s = database, timeout_s
        self._waiting: list[tuple[Row, asyncio.Future[Row]]] = []
        self._writing: asyncio.Task | None = None

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
            async with self._database.connection() as conn:
                logged = await queries.insert_once(conn, [row for row, _ in batch])
        except (psycopg.OperationalError, TimeoutError) as exc:  # out of reach: every caller falls back
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


def _settle(batch: list[tuple[Row, asyncio.Future[Row]]], result: Row | BaseException) -> None:
    for _, answer in batch:
        if answer.done():  # its caller gave up (timeout, client gone)
            continue
        if isinstance(result, BaseException):
            answer.set_exception(result)
        else:
            answer.set_result(result)

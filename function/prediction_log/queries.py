"""Reads of the predictions table, computed in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from function.prediction_log.schema import COLUMNS, Row


@dataclass(frozen=True)
class VersionStats:
    """Aggregates of the predictions one (model version, Knative revision) served."""

    model_version: str
    revision: str | None
    predictions: int
    class_counts: dict[str, int]
    mean_confidence: float
    latency_p50_ms: float
    latency_p95_ms: float


RECENT = f"SELECT {', '.join(COLUMNS)} FROM predictions ORDER BY created_at DESC, id DESC LIMIT %(limit)s"

# Two aggregates over the same rows, joined on (version, revision); revision may be NULL, hence IS NOT DISTINCT.
STATS = """
WITH scoped AS (
    SELECT model_version, revision, predicted_class, confidence, latency_ms FROM predictions
    WHERE %(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz
), per_version AS (
    SELECT model_version, revision, count(*) AS predictions, avg(confidence) AS mean_confidence,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95_ms
    FROM scoped GROUP BY model_version, revision
), per_class AS (
    SELECT model_version, revision, jsonb_object_agg(predicted_class, n) AS class_counts
    FROM (SELECT model_version, revision, predicted_class, count(*) AS n FROM scoped
          GROUP BY model_version, revision, predicted_class) AS counted
    GROUP BY model_version, revision
)
SELECT v.model_version, v.revision, v.predictions, c.class_counts, v.mean_confidence, v.latency_p50_ms,
       v.latency_p95_ms
FROM per_version AS v
JOIN per_class AS c ON c.model_version = v.model_version AND c.revision IS NOT DISTINCT FROM v.revision
ORDER BY v.model_version, v.revision NULLS FIRST
"""


INSERT_ONCE = (
    f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    "ON CONFLICT (event_source, event_id) DO NOTHING RETURNING id"
)
BY_EVENT = f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE event_source = %s AND event_id = %s"


async def insert_once(conn, row: Row) -> Row:
    """Write an event's `row`, or return the row already written for its (event_source, event_id). A conflicting
    insert that is not committed yet makes PostgreSQL wait for it, so concurrent deliveries settle on one row."""
    async with conn.transaction():
        cursor = await conn.execute(INSERT_ONCE, row.values())
        if await cursor.fetchone() is not None:
            return row
    cursor = await conn.execute(BY_EVENT, (row.event_source, row.event_id))
    return Row(*await cursor.fetchone())


async def recent(conn, limit: int) -> list[dict]:
    """The newest `limit` rows, newest first, as dicts of the row's fields (probabilities a dict)."""
    cursor = await conn.execute(RECENT, {"limit": limit})
    names = [column.name for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in await cursor.fetchall()]


async def stats(conn, since: datetime | None) -> list[VersionStats]:
    """One `VersionStats` per (model version, revision) with predictions at or after `since` (all if None)."""
    cursor = await conn.execute(STATS, {"since": since})
    return [VersionStats(*values) for values in await cursor.fetchall()]

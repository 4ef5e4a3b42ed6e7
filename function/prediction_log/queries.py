"""Reads of the predictions table, computed in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from function.prediction_log.schema import COLUMNS, Feedback, Issued, Row


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
    feedback_count: int = 0
    feedback_correct: int = 0
    accuracy: float | None = None  # on the predictions with feedback; None without any


# Two aggregates over the same rows, joined on (version, revision); revision may be NULL, hence IS NOT DISTINCT.
STATS = """
WITH scoped AS (
    SELECT p.model_version, p.revision, p.predicted_class, p.confidence, p.latency_ms, f.correct
    FROM predictions AS p LEFT JOIN feedback AS f ON f.prediction_id = p.id
    WHERE (%(since)s::timestamptz IS NULL OR p.created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR p.created_at < %(until)s::timestamptz)
), per_version AS (
    SELECT model_version, revision, count(*) AS predictions, avg(confidence) AS mean_confidence,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95_ms,
           count(correct) AS feedback_count, count(*) FILTER (WHERE correct) AS feedback_correct
    FROM scoped GROUP BY model_version, revision
), per_class AS (
    SELECT model_version, revision, jsonb_object_agg(predicted_class, n) AS class_counts
    FROM (SELECT model_version, revision, predicted_class, count(*) AS n FROM scoped
          GROUP BY model_version, revision, predicted_class) AS counted
    GROUP BY model_version, revision
)
SELECT v.model_version, v.revision, v.predictions, c.class_counts, v.mean_confidence, v.latency_p50_ms,
       v.latency_p95_ms, v.feedback_count, v.feedback_correct,
       v.feedback_correct::float8 / NULLIF(v.feedback_count, 0) AS accuracy
FROM per_version AS v
JOIN per_class AS c ON c.model_version = v.model_version AND c.revision IS NOT DISTINCT FROM v.revision
ORDER BY v.model_version, v.revision NULLS FIRST
"""


_VALUES = f"({', '.join(['%s'] * len(COLUMNS))})"
BY_EVENTS = (
    f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE (event_source, event_id) IN "
    "(SELECT * FROM unnest(%s::text[], %s::text[]))"
)


async def insert_once(conn, rows: list[Row]) -> dict[tuple[str, str], Row]:
    """On a connection in autocommit: write events' `rows`, each unless a row for its (event_source, event_id) is there already; returns the
    logged row of every event. An insert that conflicts with one not committed yet waits for it, so concurrent
    deliveries settle on one row; two rows of one event in `rows` settle on the first."""
    # In key order: two instances writing the same events in different orders would otherwise deadlock.
    rows = sorted(rows, key=lambda row: (row.event_source, row.event_id))  # stable: the first stays first
    values = ", ".join([_VALUES] * len(rows))
    insert = (
        f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES {values} "
        "ON CONFLICT (event_source, event_id) DO NOTHING RETURNING id"
    )
    cursor = await conn.execute(insert, [value for row in rows for value in row.values()])
    written = {uuid for (uuid,) in await cursor.fetchall()}
    logged = {(row.event_source, row.event_id): row for row in rows if row.id in written}
    missing = {(row.event_source, row.event_id) for row in rows} - logged.keys()
    if missing:  # a new statement, a new snapshot: it sees the rows the insert waited for
        sources, ids = zip(*missing, strict=True)
        cursor = await conn.execute(BY_EVENTS, (list(sources), list(ids)))
        for values in await cursor.fetchall():
            row = Row(*values)
            logged[row.event_source, row.event_id] = row
    return logged


async def by_event(conn, source: str, event_id: str) -> Row | None:
    cursor = await conn.execute(BY_EVENTS, ([source], [event_id]))
    values = await cursor.fetchone()
    return None if values is None else Row(*values)


async def stats(conn, since: datetime | None, until: datetime | None = None) -> list[VersionStats]:
    """One `VersionStats` per (model version, revision) with predictions in [since, until) (open if None)."""
    cursor = await conn.execute(STATS, {"since": since, "until": until})
    return [VersionStats(*values) for values in await cursor.fetchall()]


HISTORY = """
SELECT p.id, p.created_at, p.predicted_class, p.confidence, p.probabilities, p.model_version, p.revision,
       p.latency_ms, f.correct, f.true_class, f.updated_at
FROM predictions AS p LEFT JOIN feedback AS f ON f.prediction_id = p.id
WHERE p.client_id = %(client)s
  AND (%(before)s::timestamptz IS NULL OR p.created_at < %(before)s::timestamptz
       OR (p.created_at = %(before)s::timestamptz AND p.id < %(before_id)s::uuid))
ORDER BY p.created_at DESC, p.id DESC LIMIT %(limit)s
"""


@dataclass(frozen=True)
class HistoryItem:
    prediction_id: uuid.UUID
    created_at: datetime
    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str
    revision: str | None
    latency_ms: float
    correct: bool | None  # None: no feedback
    true_class: str | None
    feedback_at: datetime | None


async def history(
    conn, client_id: str, limit: int, before: datetime | None, before_id: uuid.UUID | None = None
) -> list[HistoryItem]:
    """A client's newest predictions after the cursor (`before`, `before_id`) in the order (created_at, id),
    newest first, with the feedback given on each. Rows can share a time (a batch's, to the microsecond): the id
    decides between them, so a page boundary among them skips none."""
    params = {"client": client_id, "limit": limit, "before": before, "before_id": before_id}
    cursor = await conn.execute(HISTORY, params)
    return [HistoryItem(*values) for values in await cursor.fetchall()]


# The newer word wins: a retried write of older feedback never replaces what was said after it.
UPSERT_FEEDBACK = """
INSERT INTO feedback (prediction_id, client_id, correct, true_class, created_at, updated_at)
VALUES (%(id)s, %(client)s, %(correct)s, %(true_class)s, %(at)s, %(at)s)
ON CONFLICT (prediction_id) DO UPDATE
SET client_id = EXCLUDED.client_id, correct = EXCLUDED.correct, true_class = EXCLUDED.true_class,
    updated_at = EXCLUDED.updated_at
WHERE feedback.updated_at <= EXCLUDED.updated_at
"""


async def save_feedback(conn, feedback: Feedback) -> None:
    await conn.execute(UPSERT_FEEDBACK, {"id": feedback.prediction_id, "client": feedback.client_id,
                                         "correct": feedback.correct, "true_class": feedback.true_class,
                                         "at": feedback.at})  # fmt: skip


async def issued(conn, prediction_id: uuid.UUID) -> Issued | None:
    cursor = await conn.execute("SELECT client_id FROM predictions WHERE id = %s", (prediction_id,))
    found = await cursor.fetchone()
    return None if found is None else Issued(found[0])

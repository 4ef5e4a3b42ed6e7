"""Reads of the predictions table, computed in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

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


@dataclass(frozen=True)
class ShadowPairs:
    """The served model's and the shadow's answers to the same images, for one (served version, shadow version),
    counted in PostgreSQL. The four `labelled_*` counts split the pairs whose true class is known from feedback:
    both right, only the served one, only the shadow, neither."""

    served_version: str
    shadow_version: str
    pairs: int
    agreements: int
    both_right: int
    served_only_right: int
    shadow_only_right: int
    both_wrong: int
    served_latency_p50_ms: float
    served_latency_p95_ms: float
    shadow_latency_p50_ms: float
    shadow_latency_p95_ms: float
    served_confidence_bins: list[int]  # CONFIDENCE_BINS equal bins over [0, 1]
    shadow_confidence_bins: list[int]
    disagreements: list[tuple[str, str, int]]  # (served class, shadow class, pairs), most first, at most 5

    @property
    def labelled(self) -> int:
        return self.both_right + self.served_only_right + self.shadow_only_right + self.both_wrong


CONFIDENCE_BINS = 10

# A pair is a served row and the shadow's row under its id; its true class is the served class if feedback
# said "right", else the class feedback named.
_PAIRS = """
WITH pairs AS (
    SELECT p.model_version AS served_version, s.model_version AS shadow_version,
           p.predicted_class AS served, s.predicted_class AS shadow,
           p.confidence AS served_confidence, s.confidence AS shadow_confidence,
           p.latency_ms AS served_latency, s.latency_ms AS shadow_latency,
           CASE WHEN f.correct THEN p.predicted_class ELSE f.true_class END AS truth
    FROM shadow_predictions AS s JOIN predictions AS p ON p.id = s.prediction_id
    LEFT JOIN feedback AS f ON f.prediction_id = p.id
    WHERE (%(since)s::timestamptz IS NULL OR p.created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR p.created_at < %(until)s::timestamptz)
)
"""


def _bins(column: str) -> str:
    """The predictions per equal bin of `column` over [0, 1] (1.0 itself in the last), one count a bin."""
    bucket = f"least(width_bucket({column}, 0, 1, {CONFIDENCE_BINS}), {CONFIDENCE_BINS})"
    return ", ".join(f"count(*) FILTER (WHERE {bucket} = {b})" for b in range(1, CONFIDENCE_BINS + 1))


SHADOW_PAIRS = (
    _PAIRS
    + """
SELECT served_version, shadow_version, count(*), count(*) FILTER (WHERE served = shadow),
       count(*) FILTER (WHERE served = truth AND shadow = truth),
       count(*) FILTER (WHERE served = truth AND shadow <> truth),
       count(*) FILTER (WHERE served <> truth AND shadow = truth),
       count(*) FILTER (WHERE served <> truth AND shadow <> truth),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY served_latency),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY served_latency),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY shadow_latency),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY shadow_latency),
       {bins}
FROM pairs GROUP BY served_version, shadow_version ORDER BY served_version, shadow_version
""".replace("{bins}", f"{_bins('served_confidence')}, {_bins('shadow_confidence')}")
)
SHADOW_DISAGREEMENTS = (
    _PAIRS
    + """
SELECT served_version, shadow_version, served, shadow, count(*) AS n FROM pairs WHERE served <> shadow
GROUP BY served_version, shadow_version, served, shadow ORDER BY n DESC, served, shadow
"""
)


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


# Each prediction of a (version, revision) falls in its reference window (by default its first day), in the recent
# window, or in neither; where the two overlap it counts as reference.
DRIFT_COUNTS = f"""
WITH firsts AS (
    SELECT model_version, revision, min(created_at) AS first FROM predictions GROUP BY model_version, revision
), windowed AS (
    SELECT p.model_version, p.revision, p.predicted_class,
           least(width_bucket(p.confidence, 0, 1, {CONFIDENCE_BINS}), {CONFIDENCE_BINS}) AS bin,
           CASE WHEN p.created_at >= coalesce(%(reference_since)s::timestamptz, f.first)
                 AND p.created_at < coalesce(%(reference_until)s::timestamptz, f.first + %(reference_span)s)
                THEN 'reference'
                WHEN p.created_at >= %(recent_since)s::timestamptz AND p.created_at < %(recent_until)s::timestamptz
                THEN 'recent' END AS time_window,
           coalesce(%(reference_since)s::timestamptz, f.first) AS reference_since,
           coalesce(%(reference_until)s::timestamptz, f.first + %(reference_span)s) AS reference_until
    FROM predictions AS p
    JOIN firsts AS f ON f.model_version = p.model_version AND f.revision IS NOT DISTINCT FROM p.revision
)
SELECT model_version, revision, time_window, predicted_class, bin, count(*), min(reference_since),
       min(reference_until)
FROM windowed WHERE time_window IS NOT NULL
GROUP BY model_version, revision, time_window, predicted_class, bin
ORDER BY model_version, revision NULLS FIRST
"""


@dataclass
class WindowCounts:
    """One window's predictions of a (version, revision): per class, and per tenth of confidence."""

    classes: dict[str, int]
    confidence_bins: list[int]

    @property
    def predictions(self) -> int:
        return sum(self.classes.values())


@dataclass
class DriftCounts:
    model_version: str
    revision: str | None
    reference_since: datetime
    reference_until: datetime
    reference: WindowCounts
    recent: WindowCounts


async def drift_counts(conn, recent_since: datetime, recent_until: datetime, reference_span: timedelta,
                       reference_since: datetime | None = None,
                       reference_until: datetime | None = None) -> list[DriftCounts]:  # fmt: skip
    """Per (version, revision): the reference window's counts (from `reference_since` to `reference_until`, or
    the version's first `reference_span`) and the recent window's, [recent_since, recent_until)."""
    params = {"recent_since": recent_since, "recent_until": recent_until, "reference_span": reference_span,
              "reference_since": reference_since, "reference_until": reference_until}  # fmt: skip
    cursor = await conn.execute(DRIFT_COUNTS, params)
    found: dict[tuple[str, str | None], DriftCounts] = {}
    for version, revision, window, predicted_class, bin_, n, since, until in await cursor.fetchall():
        entry = found.setdefault((version, revision), DriftCounts(
            version, revision, since, until, WindowCounts({}, [0] * CONFIDENCE_BINS),
            WindowCounts({}, [0] * CONFIDENCE_BINS)))  # fmt: skip
        counts = entry.reference if window == "reference" else entry.recent
        counts.classes[predicted_class] = counts.classes.get(predicted_class, 0) + n
        counts.confidence_bins[bin_ - 1] += n
    return list(found.values())


async def shadow_pairs(conn, since: datetime | None, until: datetime | None = None) -> list[ShadowPairs]:
    """One `ShadowPairs` per (served version, shadow version) with served predictions in [since, until)."""
    params = {"since": since, "until": until}
    cursor = await conn.execute(SHADOW_DISAGREEMENTS, params)
    disagreements: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for served_version, shadow_version, served, shadow, n in await cursor.fetchall():
        cells = disagreements.setdefault((served_version, shadow_version), [])
        if len(cells) < 5:
            cells.append((served, shadow, n))
    cursor = await conn.execute(SHADOW_PAIRS, params)
    pairs = []
    for values in await cursor.fetchall():
        counts, bins = values[: -2 * CONFIDENCE_BINS], values[-2 * CONFIDENCE_BINS :]
        served_bins, shadow_bins = list(bins[:CONFIDENCE_BINS]), list(bins[CONFIDENCE_BINS:])
        cells = disagreements.get((values[0], values[1]), [])
        pairs.append(ShadowPairs(*counts, served_bins, shadow_bins, cells))
    return pairs


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

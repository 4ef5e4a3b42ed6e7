"""The quality loop's reads, computed in PostgreSQL: the served model's and the shadow's answers to the same
images (pairs, with the true class feedback gave), and each version's predictions in two windows (drift)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


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

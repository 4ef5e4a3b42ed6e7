"""The rollout decision drawn from a comparison: promote the candidate, hold (keep watching), or roll it back.

- No conclusion below the minimum of labelled images: hold. Agreement alone never promotes: two versions can
  agree on 95% of the images and the candidate be wrong on the 5% that matter.
- Rollback when the candidate is shown less accurate (the whole interval of the difference below 0).
- Promote when it is shown at least as accurate, within the margin (the interval's low end above -margin, the
  difference itself not below 0), and, for revisions, its p95 latency is within `max_latency_ratio` of the
  stable one's (a difference under 5 ms is not judged). A shadow's latency is not compared: it runs on one thread, off the answer path.
- Hold otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from function.quality.comparison import Comparison

PROMOTE, HOLD, ROLLBACK = "promote", "hold", "rollback"
EXIT_CODES = {PROMOTE: 0, HOLD: 10, ROLLBACK: 11}
MARGIN = 0.02
MAX_LATENCY_RATIO = 1.5
# A p95 this much slower or less is not judged, whatever the ratio: timer and scheduling noise at sub-ms latencies
LATENCY_NOISE_MS = 5.0


@dataclass(frozen=True)
class Decision:
    decision: str
    reason: str

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]


def decide(
    comparison: Comparison, margin: float = MARGIN, max_latency_ratio: float = MAX_LATENCY_RATIO
) -> Decision:
    if not comparison.conclusive:
        return Decision(HOLD, comparison.summary)
    difference = comparison.difference
    if difference.high < 0:
        return Decision(ROLLBACK, comparison.summary)
    if difference.low <= -margin or difference.value < 0:
        return Decision(HOLD, f"{comparison.summary}; not shown within {margin:.0%} of the stable version")
    stable, candidate = comparison.stable, comparison.candidate
    if (comparison.kind == "revisions" and candidate.latency_p95_ms > max_latency_ratio * stable.latency_p95_ms
            and candidate.latency_p95_ms - stable.latency_p95_ms > LATENCY_NOISE_MS):  # fmt: skip
        return Decision(HOLD, f"{comparison.summary}; but p95 latency {candidate.latency_p95_ms:.1f} ms against "
                              f"{stable.latency_p95_ms:.1f} ms, above {max_latency_ratio}x")  # fmt: skip
    return Decision(PROMOTE, comparison.summary)

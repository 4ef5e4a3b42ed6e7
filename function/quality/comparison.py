"""Two model versions side by side, from the log: a shadow pair (the same images, so agreement and a paired
accuracy difference) or two Knative revisions of an A/B split (different images: an unpaired difference).

Accuracy here is on feedback: a prediction someone said was right, or said was wrong and named the true class.
Under `min_labelled` labelled images no accuracy is concluded on, whatever the intervals say: a handful of
labels from a few users is not a sample of the traffic."""

from __future__ import annotations

from dataclasses import dataclass, field

from function.prediction_log.quality_queries import ShadowPairs
from function.prediction_log.queries import VersionStats
from function.quality.intervals import Interval, paired_difference, unpaired_difference, wilson

MIN_LABELLED = 100


@dataclass(frozen=True)
class Side:
    """One version's figures in a comparison."""

    version: str
    revision: str | None
    predictions: int
    labelled: int
    accuracy: Interval | None  # on its labelled predictions; None without any
    latency_p50_ms: float
    latency_p95_ms: float
    confidence_bins: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    kind: str  # "shadow": same images; "revisions": an A/B split
    stable: Side
    candidate: Side
    labelled_pairs: int  # images labelled on both sides (shadow), or the smaller side's labels (revisions)
    difference: Interval | None  # candidate accuracy minus stable's
    agreement: float | None = None  # shadow: share of images both classified alike
    disagreements: list[tuple[str, str, int]] = field(
        default_factory=list
    )  # (stable's class, candidate's, n)
    min_labelled: int = MIN_LABELLED

    @property
    def conclusive(self) -> bool:
        return self.difference is not None and self.labelled_pairs >= self.min_labelled

    @property
    def summary(self) -> str:
        """What can be said, in words (the UI shows it)."""
        if not self.conclusive:
            return (
                f"too few labelled images to conclude: {self.labelled_pairs} of the {self.min_labelled} needed "
                "(give feedback on more predictions)"
            )
        d = self.difference
        span = f"{d.value:+.1%} (95% interval {d.low:+.1%} to {d.high:+.1%})"
        if d.low > 0:
            return f"version {self.candidate.version} is more accurate: {span}"
        if d.high < 0:
            return f"version {self.candidate.version} is less accurate: {span}"
        return f"no accuracy difference shown: {span}"


def from_shadow(pairs: ShadowPairs, min_labelled: int = MIN_LABELLED) -> Comparison:
    labelled = pairs.labelled
    stable = Side(pairs.served_version, None, pairs.pairs, labelled,
                  wilson(pairs.both_right + pairs.served_only_right, labelled), pairs.served_latency_p50_ms,
                  pairs.served_latency_p95_ms, pairs.served_confidence_bins)  # fmt: skip
    candidate = Side(pairs.shadow_version, None, pairs.pairs, labelled,
                     wilson(pairs.both_right + pairs.shadow_only_right, labelled), pairs.shadow_latency_p50_ms,
                     pairs.shadow_latency_p95_ms, pairs.shadow_confidence_bins)  # fmt: skip
    difference = paired_difference(pairs.both_right, pairs.served_only_right, pairs.shadow_only_right,
                                   pairs.both_wrong)  # fmt: skip
    agreement = pairs.agreements / pairs.pairs if pairs.pairs else None
    return Comparison("shadow", stable, candidate, labelled, difference, agreement, pairs.disagreements,
                      min_labelled)  # fmt: skip


def revision_pairs(stats: list[VersionStats], min_labelled: int = MIN_LABELLED) -> list[Comparison]:
    """An A/B split's comparisons: the revision with the most predictions (the stable one, on most of the traffic)
    against each other revision. Rows without a revision (outside Knative) are not revisions."""
    revisions = sorted((row for row in stats if row.revision), key=lambda row: -row.predictions)
    return [from_revisions(revisions[0], other, min_labelled) for other in revisions[1:]]


def from_revisions(
    stable: VersionStats, candidate: VersionStats, min_labelled: int = MIN_LABELLED
) -> Comparison:
    def side(stats: VersionStats) -> Side:
        return Side(stats.model_version, stats.revision, stats.predictions, stats.feedback_count,
                    wilson(stats.feedback_correct, stats.feedback_count), stats.latency_p50_ms,
                    stats.latency_p95_ms)  # fmt: skip

    difference = unpaired_difference(stable.feedback_correct, stable.feedback_count, candidate.feedback_correct,
                                     candidate.feedback_count)  # fmt: skip
    labelled = min(stable.feedback_count, candidate.feedback_count)
    return Comparison(
        "revisions", side(stable), side(candidate), labelled, difference, min_labelled=min_labelled
    )

"""Drift without labels: has what a version predicts changed since it started serving? The predicted-class mix and
the confidence histogram of a recent window against a reference window (the version's first day, or a period the
user names), each as a population stability index: below 0.1 stable, 0.1-0.25 watch, 0.25 and over act."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from function.prediction_log.quality_queries import DriftCounts
from function.quality.intervals import psi, psi_level

# Fewer predictions than this in either window: no index (a few images make any mix look shifted).
MIN_WINDOW_PREDICTIONS = 50
LEVELS = ("stable", "watch", "act")


@dataclass(frozen=True)
class Drift:
    model_version: str
    revision: str | None
    reference_since: datetime
    reference_until: datetime
    reference_predictions: int
    recent_predictions: int
    class_mix_psi: float | None  # None: a window with fewer than MIN_WINDOW_PREDICTIONS
    confidence_psi: float | None
    level: str | None  # the worse of the two: stable, watch or act
    note: str | None = None  # why there is no index, in words


def of(counts: DriftCounts, min_predictions: int = MIN_WINDOW_PREDICTIONS) -> Drift:
    reference, recent = counts.reference, counts.recent
    base = (counts.model_version, counts.revision, counts.reference_since, counts.reference_until,
            reference.predictions, recent.predictions)  # fmt: skip
    if min(reference.predictions, recent.predictions) < min_predictions:
        note = (f"needs {min_predictions} predictions in each window (reference {reference.predictions}, recent "
                f"{recent.predictions})")  # fmt: skip
        return Drift(*base, None, None, None, note)
    classes, confidence = (
        psi(reference.classes, recent.classes),
        psi(reference.confidence_bins, recent.confidence_bins),
    )
    level = max((psi_level(classes), psi_level(confidence)), key=LEVELS.index)
    return Drift(*base, classes, confidence, level)

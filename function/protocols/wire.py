"""What goes over the wire: the msgspec Structs every door answers with, and how a domain object becomes one."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from function.inference.outcome import Outcome
from function.model.classifier import ModelCard, highest_first
from function.model.slot import ModelSlot
from function.model.source import ModelSource
from function.prediction_log import HistoryItem, VersionStats
from function.quality.comparison import Comparison
from function.quality.drift import Drift
from function.settings import Settings


class PredictionResponse(msgspec.Struct):
    class_: str = msgspec.field(name="class")
    confidence: float
    all_predictions: dict[str, float]  # highest first
    prediction_time: float  # seconds, decode + inference, as the team's plan reports it
    prediction_id: str
    model_version: str
    revision: str | None  # the Knative revision that answered (K_REVISION); None outside Knative

    @classmethod
    def of(cls, outcome: Outcome) -> PredictionResponse:
        return cls(
            class_=outcome.prediction.class_name,
            confidence=outcome.prediction.confidence,
            all_predictions=outcome.ranked,
            prediction_time=outcome.seconds,
            prediction_id=str(outcome.prediction_id),
            model_version=outcome.model_version,
            revision=outcome.revision,
        )


class Problem(msgspec.Struct):
    """RFC 9457 problem details: what was wrong, in words a client can act on."""

    type: str
    title: str
    status: int
    detail: str


class Health(msgspec.Struct):
    status: str  # healthy, unavailable, draining
    model_loaded: bool
    reason: str | None = None


class ShadowInfo(msgspec.Struct):
    """The shadow model (SHADOW_MODEL_URI): classifies a share of the served images off the answer path; its
    answers are logged, never sent. `loaded` false: still loading (or failed: `error`)."""

    uri: str
    sample: float  # SHADOW_SAMPLE: the share of predictions it sees
    loaded: bool
    error: str | None = None
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    served_from_cache: bool | None = None
    classes: list[str] | None = None
    input_size: list[int] | None = None
    precision: str | None = None
    source_version: str | None = None

    @classmethod
    def of(cls, slot: ModelSlot, settings: Settings) -> ShadowInfo:
        info = cls(
            settings.shadow_model_uri or "", settings.shadow_sample, slot.classifier is not None, slot.error
        )
        if slot.classifier is None or slot.source is None:
            return info
        card, source = slot.classifier.card, slot.source
        return msgspec.structs.replace(
            info, name=source.name, version=source.version, alias=source.alias,
            served_from_cache=source.from_cache, classes=list(card.class_names), input_size=list(card.input_size),
            precision=card.precision, source_version=card.source_version,
        )  # fmt: skip


class ModelInfo(msgspec.Struct):
    name: str
    version: str
    alias: str | None
    uri: str
    served_from_cache: bool
    classes: list[str]
    input_size: list[int]
    input_scaling: str
    precision: str
    color_mode: str
    source_model: str
    source_version: str
    revision: str | None
    service: str | None
    configuration: str | None
    prediction_log: bool  # whether predictions are kept (DATABASE_URL): history, feedback and stats need it
    shadow: ShadowInfo | None = None  # None: no SHADOW_MODEL_URI

    @classmethod
    def of(cls, source: ModelSource, card: ModelCard, settings: Settings,
           shadow_slot: ModelSlot | None = None) -> ModelInfo:  # fmt: skip
        return cls(
            name=source.name,
            version=source.version,
            alias=source.alias,
            uri=source.uri,
            served_from_cache=source.from_cache,
            classes=list(card.class_names),
            input_size=list(card.input_size),
            input_scaling=card.input_scaling,
            precision=card.precision,
            color_mode=card.color_mode,
            source_model=card.source_model,
            source_version=card.source_version,
            revision=settings.k_revision,
            service=settings.k_service,
            configuration=settings.k_configuration,
            prediction_log=settings.database_url is not None,
            shadow=ShadowInfo.of(shadow_slot, settings) if shadow_slot is not None else None,
        )


class FeedbackGiven(msgspec.Struct):
    correct: bool
    true_class: str | None
    updated_at: datetime


class HistoryEntry(msgspec.Struct):
    prediction_id: str
    created_at: datetime
    class_: str = msgspec.field(name="class")
    confidence: float
    all_predictions: dict[str, float]  # highest first
    model_version: str
    revision: str | None
    prediction_time: float
    feedback: FeedbackGiven | None

    @classmethod
    def of(cls, item: HistoryItem) -> HistoryEntry:
        feedback = None
        if item.correct is not None:
            feedback = FeedbackGiven(item.correct, item.true_class, item.feedback_at)
        ranked = highest_first(item.probabilities)
        return cls(str(item.prediction_id), item.created_at, item.predicted_class, ranked[item.predicted_class],
                   ranked, item.model_version, item.revision, item.latency_ms / 1000, feedback)  # fmt: skip


class History(msgspec.Struct):
    predictions: list[HistoryEntry]
    # The page after this one: pass these as `before` and `before_id`; None: no more
    next_before: datetime | None
    next_before_id: uuid.UUID | None = None


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    correct: bool
    true_class: str | None = None  # required when correct is false


class FileResult(msgspec.Struct):
    """One file of a batch: exactly one of `prediction` and `problem` is set."""

    filename: str
    prediction: PredictionResponse | None = None
    problem: Problem | None = None


class BatchResponse(msgspec.Struct):
    results: list[FileResult]  # in the order the files were sent


class Accuracy(msgspec.Struct):
    """On the labelled images, with its 95% interval (Wilson; a difference: Newcombe's, paired)."""

    value: float
    low: float
    high: float


class Disagreement(msgspec.Struct):
    served_class: str
    shadow_class: str
    count: int


class ShadowComparison(msgspec.Struct):
    """The served version and the shadow on the same images. `agreement`: the share both classified alike;
    accuracies on the images whose true class feedback gave (`labelled`); `conclusive` false below
    `min_labelled` of them, and `summary` says so in words."""

    served_version: str
    shadow_version: str
    predictions: int
    agreement: float | None
    labelled: int
    min_labelled: int
    conclusive: bool
    summary: str
    served_accuracy: Accuracy | None
    shadow_accuracy: Accuracy | None
    accuracy_difference: Accuracy | None  # shadow minus served
    disagreements: list[Disagreement]  # the most frequent (served class, shadow class) pairs, at most 5
    served_latency_p50_ms: float
    served_latency_p95_ms: float
    shadow_latency_p50_ms: float  # one thread, off the answer path: not the latency it would serve with
    shadow_latency_p95_ms: float
    served_confidence_bins: list[int]  # predictions per tenth of confidence, 0-0.1 first
    shadow_confidence_bins: list[int]

    @classmethod
    def of(cls, c: Comparison) -> ShadowComparison:
        return cls(
            c.stable.version, c.candidate.version, c.stable.predictions, c.agreement, c.labelled_pairs,
            c.min_labelled, c.conclusive, c.summary, _accuracy(c.stable.accuracy), _accuracy(c.candidate.accuracy),
            _accuracy(c.difference), [Disagreement(*cell) for cell in c.disagreements], c.stable.latency_p50_ms,
            c.stable.latency_p95_ms, c.candidate.latency_p50_ms, c.candidate.latency_p95_ms,
            c.stable.confidence_bins, c.candidate.confidence_bins,
        )  # fmt: skip


class RevisionComparison(msgspec.Struct):
    """Two Knative revisions of an A/B split (knative/overlays/ab): the stable one (the most predictions) against
    another, each on its own images, so no agreement; accuracies on feedback with Wilson 95% intervals and their
    difference with Newcombe's unpaired interval; `conclusive` false below `min_labelled` on either side."""

    stable_revision: str
    candidate_revision: str
    stable_version: str
    candidate_version: str
    stable_predictions: int
    candidate_predictions: int
    labelled: int  # the smaller side's labelled predictions
    min_labelled: int
    conclusive: bool
    summary: str
    stable_accuracy: Accuracy | None
    candidate_accuracy: Accuracy | None
    accuracy_difference: Accuracy | None  # candidate minus stable
    stable_latency_p95_ms: float
    candidate_latency_p95_ms: float

    @classmethod
    def of(cls, c: Comparison) -> RevisionComparison:
        return cls(
            c.stable.revision, c.candidate.revision, c.stable.version, c.candidate.version, c.stable.predictions,
            c.candidate.predictions, c.labelled_pairs, c.min_labelled, c.conclusive, c.summary,
            _accuracy(c.stable.accuracy), _accuracy(c.candidate.accuracy), _accuracy(c.difference),
            c.stable.latency_p95_ms, c.candidate.latency_p95_ms,
        )  # fmt: skip


def _accuracy(interval) -> Accuracy | None:
    return None if interval is None else Accuracy(interval.value, interval.low, interval.high)


class DriftReport(msgspec.Struct):
    """A version's (and revision's) predictions now against its reference window, without labels: population
    stability indexes of the predicted-class mix and of the confidence histogram; `level` the worse of the two
    (under 0.1 stable, under 0.25 watch, else act); null indexes and a `note` when a window is too small."""

    model_version: str
    revision: str | None
    reference_since: datetime
    reference_until: datetime
    reference_predictions: int
    recent_predictions: int
    class_mix_psi: float | None
    confidence_psi: float | None
    level: str | None
    note: str | None

    @classmethod
    def of(cls, drift: Drift) -> DriftReport:
        return cls(*(getattr(drift, f) for f in cls.__struct_fields__))


class Stats(msgspec.Struct):
    since: datetime | None
    until: datetime | None
    versions: list[VersionStats]
    shadow: list[ShadowComparison] = []  # served vs shadow (SHADOW_MODEL_URI) per pair of versions logged
    revisions: list[RevisionComparison] = []  # the revision with the most predictions against each other one
    drift: list[DriftReport] = []  # per version and revision: [since, until) (default: the last day) against
    # its reference window

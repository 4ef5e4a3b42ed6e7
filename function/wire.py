"""What goes over the wire: the msgspec Structs every door answers with, and how a domain object becomes one."""

from __future__ import annotations

import msgspec

from function.model_source import ModelSource
from function.service import Outcome
from function.settings import Settings


class PredictionResponse(msgspec.Struct):
    class_: str = msgspec.field(name="class")
    confidence: float
    all_predictions: dict[str, float]  # highest first
    prediction_time: float  # seconds, decode + inference, as the team's plan reports it
    prediction_id: str
    model_version: str

    @classmethod
    def of(cls, outcome: Outcome) -> PredictionResponse:
        return cls(
            class_=outcome.prediction.class_name,
            confidence=outcome.prediction.confidence,
            all_predictions=outcome.ranked,
            prediction_time=outcome.seconds,
            prediction_id=str(outcome.prediction_id),
            model_version=outcome.model_version,
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
    source_model: str
    source_version: str
    revision: str | None
    service: str | None
    configuration: str | None

    @classmethod
    def of(cls, source: ModelSource, card, settings: Settings) -> ModelInfo:
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
            source_model=card.source_model,
            source_version=card.source_version,
            revision=settings.k_revision,
            service=settings.k_service,
            configuration=settings.k_configuration,
        )

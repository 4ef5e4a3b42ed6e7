"""What goes into the prediction service and what comes out: a request's context, an outcome, and the two
refusals of a request as a whole. No HTTP here: the doors turn these into their own wire shapes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from function.model.classifier import Prediction, highest_first
from function.prediction_log import Row


class ParameterOutOfRange(ValueError):
    """A request parameter outside what the model allows (the client's fault)."""


class BatchRejected(ValueError):
    """Items of an all-or-nothing batch that cannot be classified: (index, ImageRejected) each."""

    def __init__(self, rejected: list[tuple[int, Exception]]):
        super().__init__("; ".join(f"element {index}: {exc}" for index, exc in rejected))
        self.rejected = rejected


@dataclass(frozen=True)
class RequestContext:
    source: str = "http"  # http, event, oip, batch: the log's `source` column
    request_id: str | None = None  # the caller's id (X-Request-Id)
    top_k: int | None = None  # how many classes to answer with, highest first; None: all
    event: EventKey | None = None  # a CloudEvent's (source, id): logged once, whoever delivers it
    client_id: str | None = None  # the browser's own id (X-Client-Id): whose history the prediction is in


@dataclass(frozen=True)
class EventKey:
    source: str
    id: str


@dataclass(frozen=True)
class Outcome:
    prediction_id: uuid.UUID
    prediction: Prediction
    ranked: dict[str, float]  # the top_k classes asked for, highest first
    seconds: float  # decode + inference
    model_name: str
    model_version: str
    revision: str | None  # the Knative revision that classified it
    created_at: datetime
    replayed: bool = False  # an event delivered before: its first answer, from the log

    @classmethod
    def of(cls, row: Row, top_k: int | None, replayed: bool = False) -> Outcome:
        ranked = highest_first(row.probabilities)
        # confidence from the JSON probabilities: the `confidence` column is a float4, they are exact
        prediction = Prediction(row.predicted_class, ranked[row.predicted_class], ranked)
        return cls(row.id, prediction, top_classes(prediction, top_k), row.latency_ms / 1000, row.model_name,
                   row.model_version, row.revision, row.created_at, replayed)  # fmt: skip


def top_classes(prediction: Prediction, top_k: int | None) -> dict[str, float]:
    if top_k is None:
        return prediction.probabilities
    return dict(list(prediction.probabilities.items())[:top_k])

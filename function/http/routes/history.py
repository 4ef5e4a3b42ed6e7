"""What the web UI reads and says back: a browser's own predictions, feedback on one, and per-version stats.

A browser makes a random client id, keeps it, and sends it as `X-Client-Id` with every request (`/predict`
stores it with the prediction). A history is listed by that id only, so a browser never sees another's.
Without DATABASE_URL these answer 503 (the prediction log is off), and the UI keeps its history itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from litestar.params import Parameter

from function import metrics
from function.http import openapi
from function.http.problems import FeedbackInvalid, UnknownPrediction
from function.http.routes.params import ClientId, client_id, own_client_id
from function.inference.service import PredictionService
from function.model.slot import ModelSlot
from function.prediction_log import Feedback, PredictionLog
from function.protocols.wire import (
    DriftReport,
    FeedbackRequest,
    History,
    HistoryEntry,
    RevisionComparison,
    ShadowComparison,
    Stats,
)
from function.quality import drift
from function.quality.comparison import from_shadow, revision_pairs

MAX_LIMIT = 100
DRIFT_RECENT = timedelta(days=1)  # drift's recent window without `since`
DRIFT_REFERENCE = timedelta(days=1)  # and its reference: each version's first day


LOG_ERRORS = {
    400: openapi.problem("No usable X-Client-Id, or a parameter of the wrong type"),
    503: openapi.problem("The prediction log is off (no DATABASE_URL), or its database does not answer"),
}

PREDICTIONS_DOCS = dict(
    summary="This browser's predictions, newest first, with their feedback", responses=LOG_ERRORS
)


async def predictions(
    prediction_log: PredictionLog,
    limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="How many (1 to 100)")] = 20,
    before: Annotated[
        datetime | None, Parameter(description="The next page: the last page's next_before")
    ] = None,
    before_id: Annotated[
        uuid.UUID | None,
        Parameter(description="With `before`: the last page's next_before_id (rows can share a time)"),
    ] = None,
    x_client_id: ClientId = None,
) -> History:
    items = await prediction_log.history(own_client_id(x_client_id), limit, before, before_id)
    entries = [HistoryEntry.of(item) for item in items]
    if len(items) < limit:
        return History(entries, None)
    return History(entries, items[-1].created_at, items[-1].prediction_id)


FEEDBACK_DOCS = dict(
    summary="Say whether a prediction was right, and if not, which class it is (the latest word counts)",
    responses={
        404: openapi.problem("No prediction with this id was made by this service for this client"),
        422: openapi.problem("A class the model does not have, or 'wrong' without the true class"),
        **LOG_ERRORS,
    },
)


async def feedback(
    prediction_id: uuid.UUID,
    data: FeedbackRequest,
    prediction_log: PredictionLog,
    service: PredictionService,
    slot: ModelSlot,
    x_client_id: ClientId = None,
) -> None:
    classifier, _ = slot.get()
    classes = classifier.card.class_names
    if data.true_class is not None and data.true_class not in classes:
        raise FeedbackInvalid(
            f"the model has no class {data.true_class!r}; its classes: {', '.join(classes)}"
        )
    if not data.correct and data.true_class is None:
        raise FeedbackInvalid("a wrong prediction needs its true_class: which of the model's classes it is")
    # Taken at once when this instance made the prediction (its row may still be queued, or the database
    # down); else the database says whether the id was ever issued. Another browser's prediction is answered
    # as one never made: the answer says nothing of whether it exists.
    client = client_id(x_client_id)
    issued = service.issued(prediction_id) or await prediction_log.issued(prediction_id)
    if issued is None or not issued.may_take_feedback_from(client):
        raise UnknownPrediction(
            f"this service made no prediction {prediction_id} for this client (X-Client-Id)"
        )
    given = Feedback(prediction_id, data.correct, data.true_class, client, datetime.now(UTC))
    await prediction_log.save_feedback(given)


STATS_DOCS = dict(
    summary="Per model version and revision: predictions, classes, confidence, latency, feedback; and the served "
    "version against the shadow (SHADOW_MODEL_URI): agreement, accuracy with 95% intervals, disagreements",
    responses={400: openapi.problem("since or until is not an RFC 3339 time"), 503: LOG_ERRORS[503]},
)


async def stats(
    prediction_log: PredictionLog,
    since: Annotated[
        datetime | None,
        Parameter(description="From this time (inclusive); default: all (drift: the last day)"),
    ] = None,
    until: Annotated[
        datetime | None, Parameter(description="Up to this time (exclusive); default: now")
    ] = None,
    reference_since: Annotated[
        datetime | None,
        Parameter(description="Drift's reference window: from (default: each version's start)"),
    ] = None,
    reference_until: Annotated[
        datetime | None,
        Parameter(description="Drift's reference window: until (default: a day after its start)"),
    ] = None,
) -> Stats:
    versions = await prediction_log.stats(since, until)
    shadow = [
        ShadowComparison.of(from_shadow(pairs)) for pairs in await prediction_log.shadow_pairs(since, until)
    ]
    now = datetime.now(UTC)
    counts = await prediction_log.drift(since or now - DRIFT_RECENT, until or now, DRIFT_REFERENCE,
                                        reference_since, reference_until)  # fmt: skip
    found = [drift.of(entry) for entry in counts]
    for entry in found:
        metrics.record_drift(entry.model_version, entry.revision, entry.class_mix_psi, entry.confidence_psi)
    revisions = [RevisionComparison.of(pair) for pair in revision_pairs(versions)]
    return Stats(since, until, versions, shadow, revisions, [DriftReport.of(entry) for entry in found])

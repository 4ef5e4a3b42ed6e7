"""CloudEvents at POST /: Knative Eventing's image events in, prediction events out
(`function.protocols.cloudevents` reads and writes them; the prediction service logs each event once per
(source, id)).

Statuses follow what Knative redelivers: 5xx, 404, 408, 409 and 429 are retried, other 4xx are not. So an event
that can never be classified (malformed, another type, not an image, a URL that is not allowed) gets a 4xx and
goes to the dead-letter sink at once; a model still loading gets 503 with Retry-After, and an image server that
failed gets 502: a retry may succeed."""

from __future__ import annotations

import msgspec
from litestar import Request, Response

from function import metrics
from function.http import openapi
from function.http.routes.params import request_id
from function.inference.image_urls import ImageUrls
from function.inference.outcome import EventKey, RequestContext
from function.inference.service import PredictionService
from function.protocols import cloudevents
from function.protocols.wire import PredictionResponse
from function.settings import BODY_SLACK_BYTES, Settings


def body_limit(settings: Settings) -> int:
    """Structured mode carries the image in base64: a third more than the image itself."""
    return settings.max_upload_bytes * 4 // 3 + BODY_SLACK_BYTES


DOCS = dict(
    summary=f"Classify the image in a CloudEvent of type {cloudevents.IMAGE_SUBMITTED}",
    description=(
        "Binary mode (ce-* headers, the image as the body) or structured mode (application/cloudevents+json, "
        'the image in data_base64); in either, data may be JSON {"image_url": "..."} instead. Answered with a '
        f"{cloudevents.PREDICTION_COMPLETED} event in the same mode, its data the /predict fields. Each (source, id) "
        "is classified and logged once: a redelivery gets the first answer again."
    ),
    responses={
        400: openapi.problem("Not a CloudEvent, a required attribute missing, or another event type"),
        403: openapi.problem("image_url not under IMAGE_URL_ALLOWED_PREFIXES (or fetching by URL is off)"),
        413: openapi.problem("Image larger than MAX_UPLOAD_BYTES or with more pixels than MAX_IMAGE_PIXELS"),
        415: openapi.problem(
            "The event's data is not an image nor JSON naming one, or the image format is unknown"
        ),
        422: openapi.problem("Truncated or corrupt image, or the image_url answered without an image"),
        502: openapi.problem(
            "The image_url's server failed or did not answer in time (a redelivery may succeed)"
        ),
        503: openapi.NOT_LOADED,
    },
    media_type="application/cloudevents+json",
)


async def receive_event(
    request: Request, service: PredictionService, image_urls: ImageUrls, settings: Settings
) -> Response:
    received = cloudevents.read(request.headers, await request.body())
    metrics.EVENTS.labels(received.mode).inc()

    async def image() -> bytes:
        return received.image if received.image is not None else await image_urls.fetch(received.image_url)

    context = RequestContext("event", request_id(request), event=EventKey(received.source, received.id))
    outcome = await service.predict_once(image, context)
    prediction = msgspec.to_builtins(PredictionResponse.of(outcome))
    # The source names the revision that classified the image, also when a redelivery is answered from the
    # log: a replayed reply is the same event (same source and id) as the first.
    source = cloudevents.reply_source(settings.k_service, outcome.revision)
    message = cloudevents.reply(received, prediction, str(outcome.prediction_id), source, outcome.created_at)
    headers = dict(message.headers)
    return Response(message.body, status_code=200, media_type=headers.pop("content-type"), headers=headers)


async def options(request: Request) -> Response:
    """OPTIONS /: Allow lists every method of the path. The page (GET /) shares it with the events, and Litestar 2
    answers a shared path's OPTIONS with the methods of the handler registered first only (litestar#4169)."""
    methods = {
        method for each in request.app.routes if each.path == "/" for method in getattr(each, "methods", ())
    }
    return Response(None, status_code=204, headers={"Allow": ", ".join(sorted(methods))})

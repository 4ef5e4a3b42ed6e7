"""CloudEvents at POST /: Knative Eventing's image events in, prediction events out (`function.events` reads and
writes them; the prediction service logs each event once per (source, id)).

Statuses follow what Knative redelivers: 5xx, 404, 408, 409 and 429 are retried, other 4xx are not. So an event
that can never be classified (malformed, another type, not an image, a URL that is not allowed) gets a 4xx and
goes to the dead-letter sink at once; a model still loading gets 503 with Retry-After, and an image server that
failed gets 502: a retry may succeed."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, post, route
from litestar.enums import HttpMethod

from function import events, metrics, problems
from function.image_urls import ImageUrls
from function.service import EventKey, PredictionService, RequestContext
from function.settings import BODY_SLACK_BYTES, Settings
from function.wire import PredictionResponse

ERRORS = {
    400: problems.spec("Not a CloudEvent, a required attribute missing, or another event type"),
    403: problems.spec("image_url not under IMAGE_URL_ALLOWED_PREFIXES (or fetching by URL is off)"),
    413: problems.spec("Image larger than MAX_UPLOAD_BYTES or with more pixels than MAX_IMAGE_PIXELS"),
    415: problems.spec(
        "The event's data is not an image nor JSON naming one, or the image format is unknown"
    ),
    422: problems.spec("Truncated or corrupt image, or the image_url answered without an image"),
    502: problems.spec("The image_url's server failed or did not answer in time (a redelivery may succeed)"),
    503: problems.spec("The model is not loaded (yet): Retry-After says when to try again"),
}


def handlers(settings: Settings) -> list:
    # Structured mode carries the image in base64: a third more than the image itself.
    body_limit = settings.max_upload_bytes * 4 // 3 + BODY_SLACK_BYTES

    @post(
        "/",
        status_code=200,
        request_max_body_size=body_limit,
        summary=f"Classify the image in a CloudEvent of type {events.IMAGE_SUBMITTED}",
        description=(
            "Binary mode (ce-* headers, the image as the body) or structured mode (application/cloudevents+json, "
            'the image in data_base64); in either, data may be JSON {"image_url": "..."} instead. Answered with a '
            f"{events.PREDICTION_COMPLETED} event in the same mode, its data the /predict fields. Each (source, id) "
            "is classified and logged once: a redelivery gets the first answer again."
        ),
        responses=ERRORS,
        media_type="application/cloudevents+json",
    )
    async def receive_event(request: Request, service: PredictionService, image_urls: ImageUrls) -> Response:
        received = events.read(request.headers, await request.body())
        metrics.EVENTS.labels(received.mode).inc()

        async def image() -> bytes:
            return (
                received.image if received.image is not None else await image_urls.fetch(received.image_url)
            )

        context = RequestContext(
            "event", request.headers.get("x-request-id"), event=EventKey(received.source, received.id)
        )
        outcome = await service.predict_once(image, context)
        prediction = msgspec.to_builtins(PredictionResponse.of(outcome))
        # The source names the revision that classified the image, also when a redelivery is answered from the
        # log: a replayed reply is the same event (same source and id) as the first.
        source = events.reply_source(settings.k_service, outcome.revision)
        message = events.reply(received, prediction, str(outcome.prediction_id), source, outcome.created_at)
        headers = dict(message.headers)
        return Response(
            message.body, status_code=200, media_type=headers.pop("content-type"), headers=headers
        )

    return [options, receive_event]  # options first, or Litestar has made its own for the path


@route("/", http_method=HttpMethod.OPTIONS, include_in_schema=False)
async def options(request: Request) -> Response:
    """OPTIONS /: Allow lists every method of the path. The page (GET /) shares it with the events, and Litestar 2
    answers a shared path's OPTIONS with the methods of the handler registered first only (litestar#4169)."""
    methods = {
        method for each in request.app.routes if each.path == "/" for method in getattr(each, "methods", ())
    }
    return Response(None, status_code=204, headers={"Allow": ", ".join(sorted(methods))})

"""What each door says in the OpenAPI document (/schema): summaries, descriptions, error answers and the
multipart bodies Litestar cannot infer. Text only: the doors' table (`function.http.doors`) attaches it, and no
handler reads it."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from function.protocols import cloudevents, oip
from function.protocols.wire import Health, Problem
from function.settings import Settings

BINARY = Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]


def problem(description: str) -> ResponseSpec:
    """An error answered as an RFC 9457 problem."""
    return ResponseSpec(
        data_container=Problem,
        description=description,
        media_type="application/problem+json",
        generate_examples=False,
    )


def oip_error(description: str) -> ResponseSpec:
    """An error answered as the Open Inference Protocol's `{"error": "..."}`."""
    return ResponseSpec(data_container=oip.Error, description=description, generate_examples=False)


def multipart_operation(file: Schema) -> type[Operation]:
    """The request body, a form with the field `file` (the handlers read the form themselves, so Litestar cannot
    infer it)."""
    body = RequestBody(
        required=True,
        content={
            "multipart/form-data": OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.OBJECT, properties={"file": file}, required=["file"])
            )
        },
    )

    @dataclass
    class MultipartOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return MultipartOperation


NOT_LOADED = problem("The model is not loaded (yet): Retry-After says when to try again")
PREDICT = dict(
    summary="Classify one image (multipart field 'file')",
    responses={
        400: problem("top_k out of range, or a query parameter of the wrong type"),
        413: problem("File larger than MAX_UPLOAD_BYTES, or image with more pixels than MAX_IMAGE_PIXELS"),
        415: problem("Empty upload, not an image, or not multipart/form-data"),
        422: problem("Truncated or corrupt image, or no multipart field named 'file'"),
        503: problem("The model is not loaded (yet)"),
    },
    operation_class=multipart_operation(BINARY),
)


def batch(settings: Settings) -> dict:
    return dict(
        summary="Classify several images (repeated multipart field 'file'), a result per file in order",
        description=(
            f"Up to MAX_BATCH_FILES ({settings.max_batch_files}) images, each in a multipart part named 'file' "
            "(or each in one named 'files'), each at most MAX_UPLOAD_BYTES. Answered 200 with one result per file, "
            "in the order sent: the /predict fields under 'prediction', or, for a file that cannot be classified, "
            "under 'problem' the RFC 9457 problem /predict would have answered for it alone (413, 415 or 422). "
            "Each classified file is logged with source 'batch'."
        ),
        responses={
            400: problem("top_k out of range, or a query parameter of the wrong type"),
            413: problem(
                f"More than MAX_BATCH_FILES ({settings.max_batch_files}) files, or a request larger than "
                f"MAX_BATCH_BYTES ({settings.max_batch_bytes:,} bytes)"
            ),
            415: problem("Not multipart/form-data"),
            422: problem(
                "No file in the fields 'file' or 'files', a value there that is not a file, or both field names used"
            ),
            503: NOT_LOADED,
        },
        operation_class=multipart_operation(
            Schema(type=OpenAPIType.ARRAY, items=BINARY, min_items=1, max_items=settings.max_batch_files)
        ),
    )


EVENT = dict(
    summary=f"Classify the image in a CloudEvent of type {cloudevents.IMAGE_SUBMITTED}",
    description=(
        "Binary mode (ce-* headers, the image as the body) or structured mode (application/cloudevents+json, "
        'the image in data_base64); in either, data may be JSON {"image_url": "..."} instead. Answered with a '
        f"{cloudevents.PREDICTION_COMPLETED} event in the same mode, its data the /predict fields. Each (source, id) "
        "is classified and logged once: a redelivery gets the first answer again."
    ),
    responses={
        400: problem("Not a CloudEvent, a required attribute missing, or another event type"),
        403: problem("image_url not under IMAGE_URL_ALLOWED_PREFIXES (or fetching by URL is off)"),
        413: problem("Image larger than MAX_UPLOAD_BYTES or with more pixels than MAX_IMAGE_PIXELS"),
        415: problem("The event's data is not an image nor JSON naming one, or the image format is unknown"),
        422: problem("Truncated or corrupt image, or the image_url answered without an image"),
        502: problem("The image_url's server failed or did not answer in time (a redelivery may succeed)"),
        503: NOT_LOADED,
    },
    media_type="application/cloudevents+json",
)

LOG_ERRORS = {
    400: problem("No usable X-Client-Id, or a parameter of the wrong type"),
    503: problem("The prediction log is off (no DATABASE_URL), or its database does not answer"),
}
PREDICTIONS = dict(
    summary="This browser's predictions, newest first, with their feedback", responses=LOG_ERRORS
)
FEEDBACK = dict(
    summary="Say whether a prediction was right, and if not, which class it is (the latest word counts)",
    responses={
        404: problem("No prediction with this id was made by this service for this client"),
        422: problem("A class the model does not have, or 'wrong' without the true class"),
        **LOG_ERRORS,
    },
)
STATS = dict(
    summary="Per model version and revision: predictions, classes, confidence, latency, feedback",
    responses={400: problem("since or until is not an RFC 3339 time"), 503: LOG_ERRORS[503]},
)

HEALTH = dict(
    summary="Readiness: 200 once the model is loaded; 503 with a reason before, and from SIGTERM on",
    responses={
        503: ResponseSpec(data_container=Health, description="Model not loaded (yet), or shutting down")
    },
)
MODEL_INFO = dict(
    summary="The model being served and the Knative revision serving it",
    responses={503: problem("The model is not loaded (yet)")},
)
PAGE = dict(summary="The web UI", media_type=MediaType.HTML)

OIP_TAGS = ["Open Inference Protocol v2"]
OIP_NOT_READY = {503: oip_error("The model is not loaded (yet); Retry-After says when to ask again")}
OIP_MODEL_ERRORS = {404: oip_error("Unknown model name or version"), **OIP_NOT_READY}
OIP_SERVER = dict(summary="Server metadata: name, version and the protocol extensions it supports")
OIP_LIVE = dict(summary="Liveness: 200 (empty body) while the process serves", media_type=MediaType.TEXT)
OIP_READY = dict(
    summary="Readiness: 200 (empty body) once the model is loaded, 503 before",
    responses=OIP_NOT_READY,
    media_type=MediaType.TEXT,
)
OIP_MODEL = dict(
    summary="Model metadata: input and output tensors, and the class order of 'probabilities'",
    responses=OIP_MODEL_ERRORS,
)
OIP_MODEL_READY = dict(
    summary="Model readiness: 200 (empty body) when this model is loaded",
    responses=OIP_MODEL_ERRORS,
    media_type=MediaType.TEXT,
)
OIP_INFER = dict(
    summary="Classify images: input 'image', UINT8 [N, H, W, 3] pixels or BYTES [N] encoded files",
    description=oip.__doc__,
    responses={
        400: oip_error("Not an inference request for this model, or an image it cannot read"),
        **OIP_MODEL_ERRORS,
    },
)

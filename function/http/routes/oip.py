"""The Open Inference Protocol v2 (REST) under /v2: a thin adapter over the prediction service.

KServe's required API (server and model health, metadata, infer) with Triton's binary tensor data extension, so
that tritonclient and other protocol clients can call the function; the tensors are `function.protocols.oip`'s.
Errors are the protocol's `{"error": "..."}`, not problem details: this router's exception handlers take
precedence over the app's for every request a /v2 route answers (an unknown path or method is still the app's)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import metadata

from litestar import Request, Response
from litestar.enums import MediaType
from litestar.exceptions import HTTPException

from function.http import openapi, problems
from function.inference.outcome import BatchRejected, Outcome, RequestContext
from function.inference.service import PredictionService
from function.model.classifier import Classifier
from function.model.slot import ModelNotReady, ModelSlot
from function.model.source import ModelSource
from function.protocols import oip as codec
from function.protocols.tensor_data import JSON_BYTES_PER_VALUE
from function.settings import BODY_SLACK_BYTES, Settings

log = logging.getLogger("function")

SERVER_NAME = "fish-function"
TAGS = ["Open Inference Protocol v2"]
NOT_READY = {503: openapi.oip_error("The model is not loaded (yet); Retry-After says when to ask again")}
MODEL_ERRORS = {404: openapi.oip_error("Unknown model name or version"), **NOT_READY}
# Decoding a body this small takes well under a millisecond: a worker thread would cost it more than it saves
# the event loop.
DECODE_ON_LOOP_BYTES = 64 * 1024
# Larger bodies are decoded on this thread, one at a time. The decoder holds the GIL in one call while it finds
# where a tensor's data ends (45 ms for 32 MB): two at once kept the event loop waiting for both (100 ms), and
# twelve would for all twelve. One at a time is no slower: the GIL lets only one decode run anyway.
_DECODER = ThreadPoolExecutor(1, thread_name_prefix="oip-decode")


class UnknownModel(LookupError):
    """A model name or version this server does not serve."""


class BodyTooLarge(ValueError):
    """A request body over its limit; the message says which limit."""


SERVER_DOCS = dict(summary="Server metadata: name, version and the protocol extensions it supports")


async def server_metadata() -> codec.ServerMetadata:
    return codec.ServerMetadata(SERVER_NAME, _server_version(), [codec.BINARY_EXTENSION])


LIVE_DOCS = dict(summary="Liveness: 200 (empty body) while the process serves", media_type=MediaType.TEXT)


async def live() -> None:
    return None


READY_DOCS = dict(
    summary="Readiness: 200 (empty body) once the model is loaded, 503 before",
    responses=NOT_READY,
    media_type=MediaType.TEXT,
)


async def ready(slot: ModelSlot) -> None:
    slot.get()


MODEL_DOCS = dict(
    summary="Model metadata: input and output tensors, and the class order of 'probabilities'",
    responses=MODEL_ERRORS,
)


async def model_metadata(slot: ModelSlot, name: str, version: str | None = None) -> codec.ModelMetadata:
    classifier, source = _served(slot, name, version)
    return codec.model_metadata(source.name, source.version, classifier.card)


MODEL_READY_DOCS = dict(
    summary="Model readiness: 200 (empty body) when this model is loaded",
    responses=MODEL_ERRORS,
    media_type=MediaType.TEXT,
)


async def model_ready(slot: ModelSlot, name: str, version: str | None = None) -> None:
    _served(slot, name, version)


INFER_DOCS = dict(
    summary="Classify images: input 'image', UINT8 [N, H, W, 3] pixels or BYTES [N] encoded files",
    description=codec.__doc__,
    responses={
        400: openapi.oip_error(
            "Not an inference request for this model, more images than MAX_BATCH_FILES, or an image it cannot read"
        ),
        413: openapi.oip_error(
            "The body is over its limit: with binary tensor data, MAX_BATCH_BYTES; in JSON alone, what "
            f"MAX_BATCH_FILES images of the model's UINT8 pixels take as JSON ({JSON_BYTES_PER_VALUE} bytes a "
            "value), or MAX_BATCH_BYTES if that is more"
        ),
        **MODEL_ERRORS,
    },
)


async def infer(
    request: Request, slot: ModelSlot, service: PredictionService, settings: Settings, name: str,
    version: str | None = None,
) -> Response[codec.InferResponse]:  # fmt: skip
    classifier, _ = _served(slot, name, version)
    parsed = await _decoded(request, classifier, settings)
    context = RequestContext("oip", request.headers.get("x-request-id") or parsed.id)
    outcomes = await _predict(service, parsed, context)
    content, json_length = codec.encode_response(parsed, outcomes, classifier.card.class_names)
    if json_length is None:
        return Response(content, media_type=MediaType.JSON)
    headers = {"Inference-Header-Content-Length": str(json_length)}
    return Response(content, media_type="application/octet-stream", headers=headers)


def _served(slot: ModelSlot, name: str, version: str | None) -> tuple[Classifier, ModelSource]:
    classifier, source = slot.get()
    if name != source.name:
        raise UnknownModel(f"unknown model '{name}': this server serves '{source.name}'")
    if version not in (None, source.version):
        raise UnknownModel(
            f"model '{name}' has no version '{version}': this server serves version '{source.version}'"
        )
    return classifier, source


def body_limit(classifier: Classifier, settings: Settings, binary: bool) -> tuple[int, str]:
    """The most bytes a body may have, and that limit in words. Binary tensor data has MAX_BATCH_BYTES; a JSON
    body has what MAX_BATCH_FILES images of the model's pixels take as JSON, if that is more."""
    height, width = classifier.card.input_size
    values = settings.max_batch_files * height * width * 3
    json_limit = values * JSON_BYTES_PER_VALUE + BODY_SLACK_BYTES
    if binary or json_limit <= settings.max_batch_bytes:
        return settings.max_batch_bytes, f"{settings.max_batch_bytes:,} bytes (MAX_BATCH_BYTES)"
    return json_limit, (
        f"{json_limit:,} bytes for JSON: what {settings.max_batch_files} images (MAX_BATCH_FILES) of {height}x"
        f"{width} UINT8 pixels take, {JSON_BYTES_PER_VALUE} bytes a value (binary tensor data takes one)"
    )


async def _decoded(request: Request, classifier: Classifier, settings: Settings) -> codec.InferRequest:
    """The body read up to its limit and decoded, on a worker thread when it is large (its bytes are let go
    on return, before the model runs)."""
    json_length = _json_length(request)
    limit, words = body_limit(classifier, settings, binary=json_length is not None)
    chunks = await _chunks(request, limit, words)

    def decode() -> codec.InferRequest:
        body = b"".join(chunks)  # on the worker too: copying tens of MB would pause the event loop
        chunks.clear()
        return codec.decode_request(body, json_length, classifier.card, settings.max_batch_files)

    if sum(map(len, chunks)) <= DECODE_ON_LOOP_BYTES:
        return decode()
    return await asyncio.get_running_loop().run_in_executor(_DECODER, decode)


async def _chunks(request: Request, limit: int, words: str) -> list[bytes]:
    """The body as it came, refused as soon as it is known to be over the limit (its Content-Length, or the bytes
    so far), not once it is all in memory."""
    too_large = BodyTooLarge(f"the request body is larger than the limit of {words}")
    if (request.content_length or 0) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return chunks


def _json_length(request: Request) -> int | None:
    if request.headers.get("content-encoding", "identity") != "identity":
        raise codec.InvalidRequest("compressed request bodies are not supported")
    value = request.headers.get("inference-header-content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        raise codec.InvalidRequest(f"Inference-Header-Content-Length is not a number: {value!r}") from None


async def _predict(
    service: PredictionService, parsed: codec.InferRequest, context: RequestContext
) -> list[Outcome]:
    if parsed.pixels is not None:
        return await service.predict_pixels(parsed.pixels, context)
    try:  # the protocol has no per-element errors: the request fails, and no row is logged for it
        return await service.predict_batch(parsed.encoded, context, all_or_nothing=True)
    except BatchRejected as exc:
        raise codec.InvalidRequest(
            f"input '{codec.INPUT}' has images that cannot be classified: {exc}"
        ) from exc


@cache
def _server_version() -> str:
    try:
        return metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:
        return "unknown"


def exception_handlers(settings: Settings) -> dict:
    """Every error type the app turns into a problem is answered here in the protocol's form instead."""

    def answer(status: int, message: str, headers: dict[str, str] | None = None) -> Response[codec.Error]:
        error = codec.Error(problems.safe(message))
        return Response(error, status_code=status, headers=headers, media_type=MediaType.JSON)

    def bad_request(_: Request, exc: Exception) -> Response:
        return answer(400, str(exc))

    def unknown(_: Request, exc: UnknownModel) -> Response:
        return answer(404, str(exc))

    def too_large(_: Request, exc: BodyTooLarge) -> Response:
        return answer(413, str(exc))

    def not_ready(_: Request, exc: ModelNotReady) -> Response:
        return answer(503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    def http(_: Request, exc: HTTPException) -> Response:
        if exc.status_code == 413:
            limit = f"{settings.max_batch_bytes:,} bytes (MAX_BATCH_BYTES)"
            return answer(413, f"the request body is larger than the limit of {limit}")
        return answer(exc.status_code, exc.detail, exc.headers)

    def internal(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return answer(500, "the server failed to answer this request; the error is logged")

    # The app maps each domain error type on its own, and across layers the most specific type wins: so every
    # one of them needs its key here too, or it would still become a problem.
    table: dict = dict.fromkeys(problems.DOMAIN_ERRORS, bad_request)
    return table | {
        codec.InvalidRequest: bad_request,
        UnknownModel: unknown,
        BodyTooLarge: too_large,
        ModelNotReady: not_ready,
        HTTPException: http,
        Exception: internal,
    }

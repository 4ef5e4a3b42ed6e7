"""The Litestar app: thin routes over one Classifier. Errors are mapped to statuses in one table."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.status_codes import HTTP_200_OK

from function import images, metrics
from function.classifier import Classifier
from function.lifecycle import Shutdown
from function.model_slot import ModelNotReady, ModelSlot
from function.prediction_log import NullLog, PostgresLog, Row
from function.settings import Settings

T = TypeVar("T")

log = logging.getLogger("function")


class MissingFile(ValueError):
    """The request did not carry an image in the multipart field `file`."""


class PredictionResponse(msgspec.Struct):
    class_: str = msgspec.field(name="class")
    confidence: float
    all_predictions: dict[str, float]
    prediction_time: float  # seconds, decode + inference, as the team's plan reports it
    prediction_id: str
    model_version: str


class Problem(msgspec.Struct):
    """RFC 9457 problem details: what was wrong, in words a client can act on."""

    type: str
    title: str
    status: int
    detail: str


def _problem_spec(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=Problem,
        description=description,
        media_type="application/problem+json",
        generate_examples=False,
    )


PREDICT_ERRORS = {
    413: _problem_spec(
        "Upload larger than MAX_UPLOAD_BYTES, or image with more pixels than MAX_IMAGE_PIXELS"
    ),
    415: _problem_spec("Empty upload, not an image, or not multipart/form-data"),
    422: _problem_spec("Truncated or corrupt image, or no multipart field named 'file'"),
    503: _problem_spec("The model is not loaded (yet)"),
}


class Health(msgspec.Struct):
    status: str
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


def problem(status: int, title: str):
    def handler(request: Request, exc: Exception) -> Response:
        detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
        body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
        return Response(body, status_code=status, media_type="application/problem+json")

    return handler


ERRORS = {
    images.ImageTooLarge: problem(413, "Image too large"),
    images.UnsupportedImage: problem(415, "Unsupported image"),
    images.CorruptImage: problem(422, "Corrupt image"),
    MissingFile: problem(422, "No image in the request"),
    ModelNotReady: problem(503, "Model not ready"),
}


def create_app(
    settings: Settings,
    prediction_log: NullLog | PostgresLog | None = None,
    slot: ModelSlot | None = None,
    shutdown: Shutdown | None = None,
) -> Litestar:
    """`slot`: a model already loading (the server starts it before importing this module); by default the
    model starts loading when the app starts. `shutdown`: the server's, which marks SIGTERM."""
    shutdown = shutdown or Shutdown(settings.shutdown_grace_s, settings.shutdown_drain_s)
    if prediction_log is None:
        prediction_log = PostgresLog(settings.database_url) if settings.database_url else NullLog()

    loading = slot if slot is not None else ModelSlot()

    workers = _Workers(settings.workers)

    def start() -> None:
        workers.start()
        if slot is None:
            loading.start(settings)

    async def flush_log() -> None:
        await prediction_log.stop(shutdown.log_flush_timeout_s())

    @post(
        "/predict",
        status_code=HTTP_200_OK,
        summary="Classify one image (multipart field 'file')",
        responses=PREDICT_ERRORS,
    )
    async def predict(request: Request, top_k: int | None = None) -> PredictionResponse:
        classifier, source = loading.get()
        data = await _upload(request)
        prediction, seconds, digest = await workers.run(_work(classifier, data, settings))
        prediction_id = uuid.uuid4()
        prediction_log.record(
            Row(
                id=prediction_id,
                created_at=datetime.now(UTC),
                image_sha256=digest,
                predicted_class=prediction.class_name,
                confidence=prediction.confidence,
                probabilities=prediction.probabilities,
                model_name=source.name,
                model_version=source.version,
                revision=settings.k_revision,
                latency_ms=seconds * 1000,
                source="http",
                request_id=request.headers.get("x-request-id"),
            )
        )
        ranked = prediction.probabilities
        if top_k:
            ranked = dict(list(ranked.items())[:top_k])
        return PredictionResponse(
            class_=prediction.class_name,
            confidence=prediction.confidence,
            all_predictions=ranked,
            prediction_time=seconds,
            prediction_id=str(prediction_id),
            model_version=source.version,
        )

    @get(
        "/health",
        summary="Readiness: 200 once the model is loaded; 503 with a reason before, and from SIGTERM on",
        responses={
            503: ResponseSpec(
                data_container=Health, description="The model is not loaded (yet), or shutting down"
            )
        },
    )
    async def health() -> Response[Health]:
        if shutdown.began:  # out of the load balancer first; requests that still come are served
            return Response(
                Health("draining", loading.classifier is not None, "shutting down"), status_code=503
            )
        if loading.classifier is not None:
            return Response(Health("healthy", True))
        reason = loading.error or "the model is still loading"
        return Response(Health("unavailable", False, reason), status_code=503)

    @get(
        "/model_info",
        summary="The model being served and the Knative revision serving it",
        responses={503: PREDICT_ERRORS[503]},
    )
    async def model_info() -> ModelInfo:
        classifier, source = loading.get()
        card = classifier.card
        return ModelInfo(
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

    prometheus = PrometheusConfig(app_name="fish-function", prefix="http", group_path=True)
    app = Litestar(
        route_handlers=[predict, health, model_info, PrometheusController],
        middleware=[prometheus.middleware],
        exception_handlers=ERRORS,
        on_startup=[start, prediction_log.start],
        on_shutdown=[flush_log, workers.stop],
        request_max_body_size=settings.max_upload_bytes + 64 * 1024,  # multipart framing around the file
    )
    app.state.model_slot = loading
    app.state.prediction_log = prediction_log
    return app


async def _upload(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise images.UnsupportedImage(
            f"send the image as multipart/form-data in a field named 'file' (got {content_type or 'no content type'})"
        )
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        fields = ", ".join(sorted(form.keys())) or "none"
        raise MissingFile(f"no file in the multipart field 'file' (fields sent: {fields})")
    return await upload.read()


class _Workers:
    """The threads that decode and infer, and how many predictions are using them.

    Not anyio's default pool: `run_in_executor` costs the event loop (which holds the GIL for it) a fraction of
    anyio's cancel-scope machinery, and the loop is the bottleneck under load. One pool per lifespan, since a
    shut-down pool takes no more work."""

    def __init__(self, size: int):
        self._size = size
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = 0  # only the event loop touches it

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._size, thread_name_prefix="predict")

    def stop(self) -> None:
        self._executor.shutdown(wait=True)  # in-flight requests are already answered when shutdown hooks run

    async def run(self, work: Callable[[bool], T]) -> T:
        """`work(alone)`: alone is true when no other prediction is being decoded or run."""
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, work, self._in_flight == 1)
        finally:
            self._in_flight -= 1


def _work(classifier: Classifier, data: bytes, settings: Settings):
    def work(alone: bool):
        started = time.perf_counter()
        try:
            pixels = images.decode(data, classifier.card.input_size, settings.max_pixels)
        except images.ImageRejected as exc:
            metrics.REJECTED_IMAGES.labels(type(exc).__name__).inc()
            raise
        prediction = classifier.classify(pixels, alone)
        seconds = time.perf_counter() - started
        metrics.PREDICTION_LATENCY.observe(seconds)
        metrics.PREDICTIONS.labels(
            prediction.class_name, metrics.confidence_bucket(prediction.confidence)
        ).inc()
        return prediction, seconds, hashlib.sha256(data).hexdigest()

    return work

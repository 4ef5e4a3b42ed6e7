"""The one room every door calls: image bytes and a request's context in, an outcome out.

It decodes and classifies on its own threads, records metrics, and queues the prediction's log row. /predict,
batches, CloudEvents and the Open Inference Protocol are transports over `predict` and `predict_batch`; none
of them builds a log row or touches the classifier. No HTTP here."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np

from function import metrics
from function.inference import images
from function.inference.outcome import (
    BatchRejected,
    Outcome,
    ParameterOutOfRange,
    RequestContext,
    top_classes,
)
from function.inference.shadow import Shadow
from function.model.classifier import Classifier, Prediction
from function.model.slot import ModelSlot
from function.model.source import ModelSource
from function.prediction_log import Issued, PredictionLog, Row
from function.settings import Settings

T = TypeVar("T")
ISSUED_REMEMBERED = 20_000


class PredictionService:
    """Owns the worker threads and how many predictions are using them (the classifier's alone/shared choice).

    Not anyio's default pool: `run_in_executor` costs the event loop (which holds the GIL for it) a fraction of
    anyio's cancel-scope machinery, and the loop is the bottleneck under load. One pool per lifespan, since a
    shut-down pool takes no more work."""

    def __init__(self, settings: Settings, slot: ModelSlot, log: PredictionLog, shadow: Shadow | None = None):
        self._settings, self._slot, self._log, self._shadow = settings, slot, log, shadow
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = 0  # only the event loop touches it
        # Ids this instance answered lately: feedback on one is taken even while its row is still queued, or
        # the database is down. Older ones are checked in the database. Each with its X-Client-Id, since feedback
        # is taken from that client alone. (20,000 of them: 4.3 MB.)
        self._issued: OrderedDict[uuid.UUID, str | None] = OrderedDict()

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._settings.workers, thread_name_prefix="predict")

    def stop(self) -> None:
        self._executor.shutdown(wait=True)  # in-flight requests are already answered when shutdown hooks run

    async def predict(self, data: bytes, context: RequestContext) -> Outcome:
        """Raises ModelNotReady, ParameterOutOfRange, or an ImageRejected subclass saying what is wrong."""
        classifier, source = self._slot.get()
        _check_top_k(context.top_k, classifier)
        done = await self._run(lambda alone: self._classify(classifier, data, alone))
        return self._record(done, source, context)

    async def predict_once(self, image: Callable[[], Awaitable[bytes]], context: RequestContext) -> Outcome:
        """An event's prediction, logged once per `context.event`: a delivery of an event the log already holds
        is answered with the first answer and adds no row. The log decides, so this holds across instances
        (without a database, every delivery is answered and none is logged).

        `image()` gives the bytes (an event may only name them). A redelivery is classified again, since asking
        the log first would cost every event a round trip; but one that fails (its image gone, the model
        still loading on a new pod) is looked up before its error is answered."""
        try:
            classifier, source = self._slot.get()
            _check_top_k(context.top_k, classifier)
            data = await image()
            done = await self._run(lambda alone: self._classify(classifier, data, alone))
        except Exception:
            logged = await self._log.find_event(context.event.source, context.event.id)
            if logged is None:
                raise
            metrics.EVENT_DUPLICATES.inc()
            return Outcome.of(logged, context.top_k, replayed=True)
        row = self._row(done, source, context)
        logged = await self._log.record_once(row)
        if logged.id != row.id:
            metrics.EVENT_DUPLICATES.inc()
            return Outcome.of(logged, context.top_k, replayed=True)
        self._offer_shadow(row, done)
        return Outcome.of(row, context.top_k)

    async def predict_pixels(self, pixels: np.ndarray, context: RequestContext) -> list[Outcome]:
        """Images already decoded and at the model's size, [N, H, W, 3] uint8 (the Open Inference Protocol's
        tensor input), in one onnxruntime run. Raises ParameterOutOfRange for any other shape or type."""
        classifier, source = self._slot.get()
        _check_top_k(context.top_k, classifier)
        expected = (*classifier.card.input_size, 3)
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise ParameterOutOfRange(
                f"the image tensor must be uint8 [N, {expected[0]}, {expected[1]}, 3]; got {pixels.dtype} "
                f"{list(pixels.shape)}"
            )
        done = await self._run(lambda alone: self._classify_pixels(classifier, pixels))
        return [self._record(item, source, context) for item in done]

    async def predict_batch(
        self, items: list[bytes], context: RequestContext, all_or_nothing: bool = False
    ) -> list[Outcome | Exception]:
        """One outcome per item, in order; an item that cannot be classified gets its ImageRejected instead,
        without failing the others. Each image is decoded and classified on the worker threads as a /predict call
        is, at most `workers` of them at a time. `all_or_nothing`: if any item is rejected, raise BatchRejected
        and log none (a caller that answers no prediction must leave no row)."""
        classifier, source = self._slot.get()
        _check_top_k(context.top_k, classifier)
        # Each image decoded and run on the workers as a /predict call is (more images/s than one batched run,
        # since decoding overlaps inference), and at most `workers` queued at once, so a batch does not stand in
        # front of the requests after it: docs/tuning.md has the figures.
        alone = len(items) == 1
        queued = asyncio.Semaphore(self._settings.workers)

        async def one(data: bytes) -> _Classified | Exception:
            async with queued:
                return await self._run(lambda first: self._classify_item(classifier, data, first and alone))

        done = await asyncio.gather(*(one(data) for data in items))
        if all_or_nothing and (
            rejected := [(i, item) for i, item in enumerate(done) if isinstance(item, Exception)]
        ):
            raise BatchRejected(rejected)
        return [
            self._record(item, source, context) if isinstance(item, _Classified) else item for item in done
        ]

    async def _run(self, work: Callable[[bool], T]) -> T:
        """`work(alone)` on a worker thread: alone is true when no other prediction is being decoded or run."""
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, work, self._in_flight == 1)
        finally:
            self._in_flight -= 1

    def _check_size(self, data: bytes) -> None:
        """In the decode step, so that a refused size is counted with the other rejected images."""
        if len(data) > self._settings.max_upload_bytes:
            raise images.ImageTooLarge(
                f"the file has {len(data):,} bytes, more than the limit of {self._settings.max_upload_bytes:,} "
                "(MAX_UPLOAD_BYTES)"
            )

    def _decode(self, classifier: Classifier, data: bytes) -> np.ndarray:
        try:
            self._check_size(data)
            return images.decode(data, classifier.card.input_size, self._settings.max_pixels)
        except images.ImageRejected as exc:
            metrics.REJECTED_IMAGES.labels(type(exc).__name__).inc()
            raise

    def _classify(self, classifier: Classifier, data: bytes, alone: bool) -> _Classified:
        started = time.perf_counter()
        pixels = self._decode(classifier, data)
        prediction = classifier.classify(pixels, alone)
        return _Classified.observed(prediction, time.perf_counter() - started, data, pixels, data)

    def _classify_item(self, classifier: Classifier, data: bytes, alone: bool) -> _Classified | Exception:
        """A batch's item: a rejected image is its answer, not the batch's failure."""
        try:
            return self._classify(classifier, data, alone)
        except images.ImageRejected as exc:
            return exc

    def _classify_pixels(self, classifier: Classifier, pixels: np.ndarray) -> list[_Classified]:
        started = time.perf_counter()
        predictions = classifier.classify_batch(pixels)
        seconds = (time.perf_counter() - started) / len(pixels)
        return [
            _Classified.observed(prediction, seconds, image.tobytes(), image, None)
            for prediction, image in zip(predictions, pixels, strict=True)
        ]

    def issued(self, prediction_id: uuid.UUID) -> Issued | None:
        """Whether this instance answered `prediction_id` lately, and for whom (None says nothing about other
        instances)."""
        if prediction_id not in self._issued:
            return None
        return Issued(self._issued[prediction_id])

    def _remember(self, row: Row) -> None:
        if len(self._issued) == ISSUED_REMEMBERED:
            self._issued.popitem(last=False)
        self._issued[row.id] = row.client_id

    def _record(self, done: _Classified, source: ModelSource, context: RequestContext) -> Outcome:
        """On the event loop (the log's queue is the loop's)."""
        row = self._row(done, source, context)
        self._log.record(row)
        self._remember(row)
        self._offer_shadow(row, done)
        return Outcome(row.id, done.prediction, top_classes(done.prediction, context.top_k), done.seconds, source.name,
                       source.version, row.revision, row.created_at)  # fmt: skip

    def _offer_shadow(self, row: Row, done: _Classified) -> None:
        if self._shadow is not None:
            self._shadow.offer(
                row, done.pixels, done.encoded, loaded=self._in_flight >= self._settings.workers
            )

    def _row(self, done: _Classified, source: ModelSource, context: RequestContext) -> Row:
        prediction = done.prediction
        return Row(
            id=uuid.uuid4(),
            created_at=datetime.now(UTC),
            image_sha256=done.image_sha256,
            predicted_class=prediction.class_name,
            confidence=prediction.confidence,
            probabilities=prediction.probabilities,
            model_name=source.name,
            model_version=source.version,
            revision=self._settings.k_revision,
            latency_ms=done.seconds * 1000,
            source=context.source,
            request_id=context.request_id,
            event_source=context.event.source if context.event else None,
            event_id=context.event.id if context.event else None,
            client_id=context.client_id,
        )


@dataclass(frozen=True)
class _Classified:
    """What a worker thread hands back: the CPU work (hashing and metrics included) is done off the loop."""

    prediction: Prediction
    seconds: float
    image_sha256: str
    pixels: np.ndarray  # what the model classified, for the shadow model (function.inference.shadow)
    encoded: bytes | None  # the upload it was decoded from (None: a tensor), for a shadow of another size

    @classmethod
    def observed(cls, prediction: Prediction, seconds: float, data: bytes, pixels: np.ndarray,
                 encoded: bytes | None) -> _Classified:  # fmt: skip
        metrics.PREDICTION_LATENCY.observe(seconds)
        bucket = metrics.confidence_bucket(prediction.confidence)
        metrics.PREDICTIONS.labels(prediction.class_name, bucket).inc()
        return cls(prediction, seconds, hashlib.sha256(data).hexdigest(), pixels, encoded)


def _check_top_k(top_k: int | None, classifier: Classifier) -> None:
    classes = len(classifier.card.class_names)
    if top_k is not None and not 1 <= top_k <= classes:
        raise ParameterOutOfRange(f"top_k must be between 1 and {classes} (the model's classes); got {top_k}")

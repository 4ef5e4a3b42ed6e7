"""The shadow: a second model (SHADOW_MODEL_URI) that classifies the images the served model answered, off the
answer path, and whose answers are logged beside the served ones under the served prediction's id.

How it stays off the answer path: the served answer is made and handed back first; only then is the shadow's
work offered, on the event loop, to one thread of its own running a one-thread onnxruntime session. At most one
job runs and one waits: an offer beyond that, one made while every prediction worker is busy, or one the
sample (SHADOW_SAMPLE) leaves out is skipped and counted (`shadow_skipped_total{reason}`), never queued. So the
shadow takes at most one core's worth of spare time, and none when the function is loaded.

The shadow sees the served model's decoded pixels when both models take the same input size, else it decodes
the upload again at its own size (on its own thread). Its rows go to the log's own queue and table
(`shadow_predictions`), so they never take a served prediction's place."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np

from function import metrics
from function.inference import images
from function.model.slot import ModelSlot
from function.prediction_log import PredictionLog, Row, ShadowRow
from function.settings import Settings

log = logging.getLogger("function.shadow")

MAX_JOBS = 2  # one running, one waiting


class Shadow:
    def __init__(self, settings: Settings, slot: ModelSlot, prediction_log: PredictionLog,
                 draw: Callable[[], float] = random.random):  # fmt: skip
        self._settings, self._slot, self._log, self._draw = settings, slot, prediction_log, draw
        self._executor: ThreadPoolExecutor | None = None
        self._jobs = 0  # running or waiting; only the event loop touches it
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="shadow")

    async def stop(self) -> None:
        """Let the jobs in hand (two at most) finish and their rows reach the log's queue, before the log is
        flushed."""
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True)
            await asyncio.sleep(0)  # the finished jobs' callbacks, scheduled on the loop, run now

    def offer(self, served: Row, pixels: np.ndarray | None, encoded: bytes | None, loaded: bool) -> None:
        """On the event loop, after the served answer is made. `pixels`: what the served model classified (at its
        input size); `encoded`: the upload it came from, if any; `loaded`: whether every prediction worker is
        busy."""
        reason = self._skip_reason(loaded)
        if reason is None and pixels is None and encoded is None:
            reason = "size"
        if reason is not None:
            metrics.SHADOW_SKIPPED.labels(reason).inc()
            return
        self._jobs += 1
        self._loop = self._loop or asyncio.get_running_loop()
        future = self._executor.submit(self._classify, served, pixels, encoded)
        future.add_done_callback(lambda done: self._loop.call_soon_threadsafe(self._finished, done))

    def _skip_reason(self, loaded: bool) -> str | None:
        if self._slot.classifier is None or self._executor is None:
            return "no_model"
        if self._draw() >= self._settings.shadow_sample:
            return "sampled_out"
        if loaded:
            return "load"
        if self._jobs >= MAX_JOBS:
            return "busy"
        return None

    def _classify(self, served: Row, pixels: np.ndarray | None, encoded: bytes | None) -> ShadowRow | None:
        """On the shadow's thread."""
        classifier, source = self._slot.get()
        started = time.perf_counter()
        size = classifier.card.input_size
        if pixels is None or tuple(pixels.shape[:2]) != tuple(size):
            if encoded is None:
                metrics.SHADOW_SKIPPED.labels("size").inc()
                return None
            pixels = images.decode(encoded, size, self._settings.max_pixels)
        prediction = classifier.classify(pixels, alone=True)
        return ShadowRow(
            prediction_id=served.id,
            created_at=datetime.now(UTC),
            predicted_class=prediction.class_name,
            confidence=prediction.confidence,
            probabilities=prediction.probabilities,
            model_name=source.name,
            model_version=source.version,
            revision=served.revision,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _finished(self, done: Future) -> None:
        """On the event loop."""
        self._jobs -= 1
        if done.cancelled():
            metrics.SHADOW_SKIPPED.labels("busy").inc()
            return
        exc = done.exception()
        if exc is not None:  # the served answer is out already: count it, say it once in the log
            metrics.SHADOW_SKIPPED.labels("error").inc()
            log.warning("shadow model: classifying failed (%r)", exc)
            return
        row = done.result()
        if row is not None:
            metrics.SHADOW_PREDICTIONS.inc()
            self._log.record_shadow(row)

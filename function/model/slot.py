"""The one model, loaded in a background thread so the server answers /health (503) while it loads.

No Litestar here: `python -m function` starts loading before it imports the web stack, so onnxruntime builds
its sessions (native code, no GIL) on one core while Python imports Litestar on the other."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from function import metrics
from function.model.classifier import Classifier, ModelInvalid
from function.model.registry import ModelUnavailable, Registry
from function.model.source import ModelSource, fetch
from function.settings import Settings

log = logging.getLogger("function")


class ModelNotReady(RuntimeError):
    """The model is still loading, or failed to load. `retry_after_s`: when asking again makes sense."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


# A load takes a second or two from the cache; a failed one is retried only when the pod restarts, so a client
# (or Knative's event delivery) should come back later rather than hammer it.
RETRY_AFTER_LOADING_S = 1
RETRY_AFTER_FAILED_S = 30


@dataclass
class ModelSlot:
    classifier: Classifier | None = None
    source: ModelSource | None = None
    error: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)
    # Run with the model's input size once it is loaded, before it serves: the decoder's first-use costs
    # (`function.inference.images.warm_up`), which would otherwise land on the first request after a cold start.
    warm_up: Callable[[tuple[int, int]], object] | None = None

    def start(self, settings: Settings) -> ModelSlot:
        threading.Thread(target=self._load, args=(settings,), name="model-loader", daemon=True).start()
        return self

    def get(self) -> tuple[Classifier, ModelSource]:
        if self.classifier is None or self.source is None:
            if self.error:
                raise ModelNotReady(self.error, RETRY_AFTER_FAILED_S)
            raise ModelNotReady("the model is still loading", RETRY_AFTER_LOADING_S)
        return self.classifier, self.source

    def _load(self, settings: Settings) -> None:
        try:
            source = fetch(settings.model_uri, Registry.of(settings), settings.cache_dir)
            # runs each session once
            classifier = Classifier(source.path, settings.threads, settings.ort_spinning)
            if self.warm_up is not None:
                self.warm_up(classifier.card.input_size)
            self.classifier, self.source = classifier, source
            card = self.classifier.card
            metrics.MODEL_INFO.labels(source.name, source.version, card.precision, card.source_version).set(1)
            cached = " (registry unreachable: from cache)" if source.from_cache else ""
            log.info("serving %s version %s%s", source.name, source.version, cached)
            classifier.share_cores()  # after it serves: a cold start's first request is alone
        except (ModelUnavailable, ModelInvalid) as exc:
            self.error = str(exc)
            log.error("no model: %s", exc)
        except Exception as exc:  # a bug must still show in /health, not leave it "loading" forever
            self.error = f"loading the model failed: {exc!r}"
            log.exception("no model")
        finally:
            self.loaded.set()

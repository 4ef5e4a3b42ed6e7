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
    # "served", or "shadow": a second model that answers no one (SHADOW_MODEL_URI), on one thread of its own
    role: str = "served"

    def start(self, settings: Settings, after: threading.Event | None = None) -> ModelSlot:
        """Load in the background; `after`: once that is set (the shadow waits for the served model's load)."""
        threading.Thread(
            target=self._load, args=(settings, after), name=f"{self.role}-model-loader", daemon=True
        ).start()
        return self

    def get(self) -> tuple[Classifier, ModelSource]:
        if self.classifier is None or self.source is None:
            if self.error:
                raise ModelNotReady(self.error, RETRY_AFTER_FAILED_S)
            raise ModelNotReady("the model is still loading", RETRY_AFTER_LOADING_S)
        return self.classifier, self.source

    def _load(self, settings: Settings, after: threading.Event | None) -> None:
        shadow = self.role == "shadow"
        if after is not None:
            after.wait()
        try:
            uri = settings.shadow_model_uri if shadow else settings.model_uri
            source = fetch(uri, Registry.of(settings), settings.cache_dir)
            # runs each session once; the shadow runs on one thread beside the served model, so one session
            classifier = Classifier(source.path, 1 if shadow else settings.threads, settings.ort_spinning)
            if self.warm_up is not None:
                self.warm_up(classifier.card.input_size)
            self.classifier, self.source = classifier, source
            card = self.classifier.card
            gauge = metrics.SHADOW_MODEL_INFO if shadow else metrics.MODEL_INFO
            gauge.labels(source.name, source.version, card.precision, card.source_version).set(1)
            cached = " (registry unreachable: from cache)" if source.from_cache else ""
            log.info("%s %s version %s%s", "shadowing with" if shadow else "serving", source.name, source.version,
                     cached)  # fmt: skip
            classifier.share_cores()  # after it serves: a cold start's first request is alone
        except (ModelUnavailable, ModelInvalid) as exc:
            self.error = str(exc)
            log.error("no %s model: %s", self.role, exc)
        except Exception as exc:  # a bug must still show in /health, not leave it "loading" forever
            self.error = f"loading the model failed: {exc!r}"
            log.exception("no model")
        finally:
            self.loaded.set()

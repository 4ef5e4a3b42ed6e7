"""One ONNX model behind two onnxruntime sessions: uint8 RGB images in, named probabilities out. No HTTP here."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

INPUT_NAME = "image"

log = logging.getLogger("function")


class ModelInvalid(RuntimeError):
    """The ONNX file does not follow the contract (uint8 [batch, H, W, 3] in, metadata with class names)."""


@dataclass(frozen=True)
class ModelCard:
    """What the ONNX file says about itself."""

    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width)
    source_model: str
    source_version: str
    input_scaling: str
    precision: str
    color_mode: str = "rgb"  # what the model sees; a grayscale model converts the RGB input in its graph


@dataclass(frozen=True)
class Prediction:
    class_name: str
    confidence: float
    probabilities: dict[str, float]  # every class, highest first


class Classifier:
    """Two sessions over the same model, because one thread setting cannot serve both loads well.

    A request that is alone gets the `solo` session, whose intra-op pool spans every CPU: lowest latency.
    Requests that overlap get the `shared` session, one thread per run, so N concurrent requests use N cores
    instead of N pools fighting over the same cores (docs/tuning.md). The caller says which case it is in, because
    only it knows about requests that are still decoding.

    The shared session is built after the solo one serves (`share_cores`, which the loader calls), or by the
    first request that overlaps another if that comes first; overlapping requests wait for it meanwhile (once,
    ~25 ms). A cold start's first request is alone, so building both up front only took a core from the start
    (16 ms of it: docs/tuning.md). Overlapping requests never run on the solo session: its arena would grow to
    hold several runs at once and keep that memory (docs/tuning.md has the figures)."""

    def __init__(self, path: Path, threads: int, spinning: bool = False):
        self._solo = _session(path, threads, spinning)
        self.card = _read_card(self._solo)
        # the first run allocates: pay for that before readiness
        self._solo.run(None, {INPUT_NAME: self._blank()})
        self._shared = self._solo
        self._shared_to_build = (path, spinning) if threads > 1 else None
        self._building = threading.Lock()

    @property
    def shares_cores(self) -> bool:
        """Whether overlapping requests run on a one-thread session of their own yet."""
        return self._shared is not self._solo

    def classify(self, image: np.ndarray, alone: bool = True) -> Prediction:
        """Probabilities for one RGB uint8 image already at the model's input size."""
        session = self._solo if alone else self._shared_session()
        (probabilities,) = session.run(None, {INPUT_NAME: image[None]})[0]
        return self._rank(probabilities)

    def classify_batch(self, images: np.ndarray) -> list[Prediction]:
        """One run over [N, H, W, 3]: a batch has the cores to itself, so it takes the session spanning them."""
        (probabilities,) = self._solo.run(None, {INPUT_NAME: images})
        return [self._rank(row) for row in probabilities]

    def share_cores(self) -> None:
        """Build the one-thread session for overlapping requests, once; a caller that finds it being built waits
        for it. The loader calls this once the model serves, on its own thread: glibc then keeps both sessions
        in the loader's malloc arena, where built on another thread the second one cost 15-20 MB more peak RSS."""
        with self._building:
            if self._shared_to_build is not None:
                self._build_shared()

    def _shared_session(self) -> ort.InferenceSession:
        if self._shared_to_build is not None:
            self.share_cores()
        return self._shared

    def _build_shared(self) -> None:
        path, spinning = self._shared_to_build
        try:
            shared = _session(path, 1, spinning)
            shared.run(None, {INPUT_NAME: self._blank()})
            self._shared = shared
        except Exception:  # noqa: BLE001 - the solo session still answers; say why it stays the only one
            log.exception("the one-thread session for overlapping requests could not be built")
        finally:
            self._shared_to_build = None

    def _blank(self) -> np.ndarray:
        return np.zeros((1, *self.card.input_size, 3), np.uint8)

    def _rank(self, probabilities: np.ndarray) -> Prediction:
        order = np.argsort(probabilities)[::-1]
        names = self.card.class_names
        ranked = {names[i]: float(probabilities[i]) for i in order}
        best = int(order[0])
        return Prediction(names[best], float(probabilities[best]), ranked)


def highest_first(probabilities: dict[str, float]) -> dict[str, float]:
    """Named probabilities read back from the log (JSONB keeps no order), ranked as a Prediction's are."""
    return dict(sorted(probabilities.items(), key=lambda pair: pair[1], reverse=True))


def _session(path: Path, threads: int, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Off: the pool's threads sleep between runs instead of spinning for the next (function.settings says why)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types
        raise ModelInvalid(f"onnxruntime cannot load {path.name}: {str(exc).splitlines()[0]}") from exc


def _read_card(session: ort.InferenceSession) -> ModelCard:
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(uint8)":
        raise ModelInvalid("the model's input must be one uint8 tensor named 'image'")
    shape = inputs[0].shape
    if len(shape) != 4 or shape[3] != 3 or not all(isinstance(d, int) for d in shape[1:3]):
        raise ModelInvalid(f"the model's input shape {shape} is not [batch, H, W, 3] with a fixed H and W")
    meta = session.get_modelmeta().custom_metadata_map
    try:
        names = tuple(json.loads(meta["class_names"]))
    except (KeyError, ValueError) as exc:
        raise ModelInvalid("the model's metadata has no JSON class_names list") from exc
    outputs = session.get_outputs()[0].shape
    if len(outputs) != 2 or outputs[1] != len(names):
        raise ModelInvalid(f"the model outputs {outputs} but names {len(names)} classes")
    return ModelCard(
        class_names=names,
        input_size=(int(shape[1]), int(shape[2])),
        source_model=meta.get("source_model", ""),
        source_version=meta.get("source_version", ""),
        input_scaling=meta.get("input_scaling", ""),
        precision=meta.get("precision", "fp32"),
        color_mode=meta.get("color_mode", "rgb"),
    )

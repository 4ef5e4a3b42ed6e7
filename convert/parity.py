"""Run Keras and onnxruntime on the same images and measure how far apart they are."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort

from convert import preprocessing
from convert.export import INPUT_NAME

BATCH = 16


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_abs_diff: float
    top1_agreement: float  # fraction of images whose top-1 class is the same in both
    top1_mismatches: int
    # Mismatches on images whose reference top two classes are within the tolerance of each other: at the
    # precision the reference computes in, their order is rounding (a float16 model's own float32 twin swaps
    # such pairs too), so they are reported but do not fail the gate.
    top1_near_ties: int
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.top1_mismatches == self.top1_near_ties

    def as_dict(self) -> dict:
        return asdict(self) | {"passed": self.passed}


def keras_probabilities(model, images: np.ndarray, scaling: str, channels: int = 3) -> np.ndarray:
    """Keras's answer for uint8 RGB images, preprocessed by the same ops the ONNX graph runs."""
    out = [
        np.asarray(model(preprocessing.apply(b, scaling, channels), training=False), dtype=np.float32)
        for b in _batches(images)
    ]
    return np.concatenate(out).astype(np.float32)


def onnx_session(model_bytes: bytes, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def onnx_probabilities(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    out = [session.run(None, {INPUT_NAME: b})[0] for b in _batches(images)]
    return np.concatenate(out)


def compare(reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> ParityReport:
    agree = reference.argmax(axis=1) == candidate.argmax(axis=1)
    top_two = np.sort(reference, axis=1)[:, -2:] if reference.shape[1] > 1 else np.zeros((len(reference), 2))
    near_tie = top_two[:, 1] - top_two[:, 0] < tolerance
    return ParityReport(
        images=len(reference),
        max_abs_diff=float(np.abs(reference - candidate).max()),
        top1_agreement=float(agree.mean()),
        top1_mismatches=int((~agree).sum()),
        top1_near_ties=int((~agree & near_tie).sum()),
        tolerance=tolerance,
    )


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float((reference.argmax(axis=1) == candidate.argmax(axis=1)).mean())


def _batches(images: np.ndarray):
    for start in range(0, len(images), BATCH):
        yield images[start : start + BATCH]

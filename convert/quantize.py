"""Static int8 quantization (QDQ, per-channel weights) calibrated on sample images, and its speed check.

Everything but the softmax is quantized: leaving Add or the first and last layers in float cost more speed
than it won back in agreement (measured on the demo MobileNetV2: int8 became slower than fp32)."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from convert.export import INPUT_NAME, set_metadata
from convert.parity import onnx_session

MIN_INT8_AGREEMENT = 0.98


# The calibrator keeps every activation of the images it is given until it builds their histograms: all 120
# at once peaked at 8 GB on MobileNetV2 224. onnxruntime's CalibStridedMinMax gives it CHUNK images at a time
# and merges the histograms (Percentile) or ranges (MinMax). Not CalibMaxIntermediateOutputs: in onnxruntime
# 1.32 the histogram calibrators ignore it and MinMax discards each chunk it clears instead of merging it.
CHUNK = 4


class _Images(CalibrationDataReader):
    """One image per feed, CHUNK at a time. CalibStridedMinMax wants a length that whole chunks divide, so the
    length is rounded up to one: the last chunk's range just holds fewer images (never none)."""

    def __init__(self, images: np.ndarray):
        self._images = images
        self.set_range(0, len(images))

    def __len__(self):
        return math.ceil(len(self._images) / self.chunk) * self.chunk

    @property
    def chunk(self) -> int:
        return min(CHUNK, len(self._images))

    def set_range(self, start_index: int, end_index: int):
        end = min(end_index, len(self._images))
        self._feeds = iter({INPUT_NAME: self._images[i : i + 1]} for i in range(start_index, end))

    def get_next(self):
        return next(self._feeds, None)


# Percentile clips the rare extreme activations that MinMax stretches every scale to fit: on the demo
# MobileNetV2 it kept 98.3% top-1 agreement where MinMax and Entropy kept 97.9%. Its histogram cannot be
# built for a tensor whose values barely vary (onnxruntime raises ValueError), so MinMax is the fallback.
CALIBRATIONS = {
    "percentile-99.99": (CalibrationMethod.Percentile, {"CalibPercentile": 99.99}),
    "minmax": (CalibrationMethod.MinMax, {}),
}


def quantize_int8(fp32: onnx.ModelProto, calibration_images: np.ndarray) -> tuple[onnx.ModelProto, str]:
    """An int8 QDQ model and the calibration that made it. The softmax stays in float: probabilities are the
    product, and quantizing the last op saves nothing measurable while it coarsens every confidence."""
    with tempfile.TemporaryDirectory(prefix="fish-int8-") as tmp:
        source, prepared, output = (Path(tmp) / n for n in ("fp32.onnx", "prep.onnx", "int8.onnx"))
        onnx.save(fp32, source)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        calibration = _quantize(prepared, output, calibration_images)
        quantized = onnx.load(output)
    set_metadata(quantized, {p.key: p.value for p in fp32.metadata_props} | {"precision": "int8"})
    quantized.producer_name, quantized.doc_string = fp32.producer_name, fp32.doc_string + " (int8)"
    return quantized, calibration


def _quantize(prepared: Path, output: Path, images: np.ndarray) -> str:
    softmax = [n.name for n in onnx.load(prepared).graph.node if n.op_type == "Softmax"]
    for name, (method, options) in CALIBRATIONS.items():
        reader = _Images(images)
        try:
            quantize_static(
                str(prepared),
                str(output),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                extra_options=options | {"CalibStridedMinMax": reader.chunk},
                nodes_to_exclude=softmax,
            )
            return name
        except ValueError as exc:  # this calibration cannot handle the data: try the next one
            failure = exc
    raise failure


def speedup(fp32_bytes: bytes, int8_bytes: bytes, images: np.ndarray, rounds: int = 200) -> dict:
    """Median single-image latency of each model on this machine, interleaved so noise hits both alike."""
    sessions = {"fp32": onnx_session(fp32_bytes), "int8": onnx_session(int8_bytes)}
    timings: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(rounds):
        feed = {INPUT_NAME: images[i % len(images)][None]}
        for name, session in sessions.items():
            session.run(None, feed)  # warm caches for this image before timing it
            start = time.perf_counter()
            session.run(None, feed)
            timings[name].append(time.perf_counter() - start)
    fp32_ms, int8_ms = (float(np.median(timings[n]) * 1000) for n in ("fp32", "int8"))
    return {"fp32_ms": fp32_ms, "int8_ms": int8_ms, "speedup": fp32_ms / int8_ms}

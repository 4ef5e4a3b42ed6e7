"""Keras model -> self-describing ONNX model (uint8 RGB in, probabilities out, scaling baked in).

The ONNX file is the whole contract with the serving function (see DESIGN.md): input `image` uint8
[batch, H, W, 3], output `probabilities` float32 [batch, C], and metadata_props that name the classes,
the source model and version, and the input scaling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx

from convert.errors import InvalidInput

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
DEFAULT_OPSET = 17

# scale * x + offset, applied to uint8 pixels before the Keras model sees them.
SCALINGS: dict[str, tuple[float, float]] = {
    "unit": (1.0 / 255.0, 0.0),  # x / 255: how the team trains and serves today
    "symmetric": (1.0 / 127.5, -1.0),  # x / 127.5 - 1: MobileNetV2's own preprocess_input
    "none": (1.0, 0.0),  # the model has its own Rescaling layer
}


@dataclass(frozen=True)
class Provenance:
    """What the ONNX file says about where it came from."""

    source_model: str
    source_version: str
    source_run_id: str
    class_names: list[str]
    input_scaling: str


def input_size(model) -> tuple[int, int]:
    """The (height, width) a Keras image model expects; it must be static and RGB."""
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[2] is None:
        raise InvalidInput(
            f"the Keras model's input shape {shape} is not [batch, H, W, 3] with a fixed H and W"
        )
    return int(shape[1]), int(shape[2])


def scale_images(images: np.ndarray, scaling: str) -> np.ndarray:
    """The float input the Keras model sees for uint8 images, exactly as the ONNX graph computes it."""
    factor, offset = SCALINGS[scaling]
    return images.astype(np.float32) * np.float32(factor) + np.float32(offset)


def to_onnx(model, provenance: Provenance, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export through a tf.function with an explicit signature (tf2onnx.from_keras breaks on Keras 3)."""
    import tensorflow as tf
    import tf2onnx

    height, width = input_size(model)
    factor, offset = SCALINGS[provenance.input_scaling]
    spec = tf.TensorSpec([None, height, width, 3], tf.uint8, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(image):
        pixels = tf.cast(image, tf.float32) * factor + offset
        return {OUTPUT_NAME: model(pixels, training=False)}

    onnx_model, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    _check_interface(onnx_model, len(provenance.class_names))
    _describe(onnx_model, provenance, tf2onnx.__version__, tf.__version__)
    return onnx_model


def _check_interface(onnx_model: onnx.ModelProto, num_classes: int) -> None:
    (output,) = onnx_model.graph.output
    dims = [d.dim_value or d.dim_param for d in output.type.tensor_type.shape.dim]
    if len(dims) != 2 or dims[1] != num_classes:
        raise InvalidInput(f"the model outputs shape {dims}, but there are {num_classes} class names")


def _describe(onnx_model: onnx.ModelProto, provenance: Provenance, tf2onnx_version: str, tf_version: str):
    onnx_model.producer_name = "fish-convert"
    onnx_model.doc_string = (
        f"{provenance.source_model} version {provenance.source_version}, converted from Keras to ONNX"
    )
    metadata = {
        "class_names": json.dumps(provenance.class_names),
        "source_model": provenance.source_model,
        "source_version": provenance.source_version,
        "source_run_id": provenance.source_run_id,
        "input_scaling": provenance.input_scaling,
        "converter": f"tf2onnx {tf2onnx_version}, tensorflow {tf_version}",
        "precision": "fp32",
    }
    set_metadata(onnx_model, metadata)


def set_metadata(onnx_model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Add or replace metadata_props entries."""
    kept = {p.key: p.value for p in onnx_model.metadata_props}
    kept.update(values)
    del onnx_model.metadata_props[:]
    for key, value in kept.items():
        onnx_model.metadata_props.add(key=key, value=value)

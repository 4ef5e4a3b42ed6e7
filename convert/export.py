"""Keras model -> self-describing ONNX model (uint8 RGB in, probabilities out, preprocessing baked in).

The ONNX file is the whole contract with the serving function (see DESIGN.md): input `image` uint8
[batch, H, W, 3], output `probabilities` float32 [batch, C], and metadata_props that name the classes,
the source model and version, the input scaling, the colour mode the model sees (`rgb`, or `grayscale` made in
the graph) and the precision it computes in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import onnx

from convert import preprocessing, tf_graph
from convert.errors import InvalidInput
from convert.keras_model import InputSpec

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class Provenance:
    """What the ONNX file says about where it came from and what it computes."""

    source_model: str
    source_version: str
    source_run_id: str
    class_names: list[str]
    input_scaling: str
    color_mode: str = "rgb"
    precision: str = "fp32"


def to_onnx(model, spec: InputSpec, provenance: Provenance, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export through a traced tf.function with an explicit uint8 RGB signature (tf2onnx.from_keras breaks on
    Keras 3): the preprocessing, grayscale included, is part of the graph."""
    import tensorflow as tf
    import tf2onnx

    signature = tf.TensorSpec([None, spec.height, spec.width, 3], tf.uint8, name=INPUT_NAME)

    @tf.function(input_signature=[signature])
    def serve(image):
        pixels = preprocessing.apply(image, provenance.input_scaling, spec.channels)
        # A float16 model's last layer may answer in float16; the contract is float32.
        return tf.cast(model(pixels, training=False), tf.float32)

    onnx_model = tf_graph.to_onnx(serve, INPUT_NAME, OUTPUT_NAME, opset)
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
        "color_mode": provenance.color_mode,
        "converter": f"tf2onnx {tf2onnx_version}, tensorflow {tf_version}",
        "precision": provenance.precision,
    }
    set_metadata(onnx_model, metadata)


def set_metadata(onnx_model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Add or replace metadata_props entries."""
    kept = {p.key: p.value for p in onnx_model.metadata_props}
    kept.update(values)
    del onnx_model.metadata_props[:]
    for key, value in kept.items():
        onnx_model.metadata_props.add(key=key, value=value)

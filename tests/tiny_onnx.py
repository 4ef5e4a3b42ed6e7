"""A tiny ONNX classifier built with onnx.helper that follows the converter's contract: uint8 [N, 8, 8, 3]
in, probabilities of red/green/blue (the dominant channel) out, class names in metadata_props."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = ["red", "green", "blue"]
SIZE = 8


def build(path: Path, class_names: list[str] = CLASSES, size: int = SIZE, filters: int = 0) -> Path:
    """`filters`: put a 3x3 convolution with that many filters before the means, work enough for onnxruntime to
    split a run across its intra-op threads (the 8x8 means alone are not)."""
    weights = numpy_helper.from_array((np.eye(3, dtype=np.float32) * 0.2), "weights")
    extra = [numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes")]  # the means over H and W
    if filters:
        rng = np.random.default_rng(0)
        extra = [
            numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "plane_axes"),
            numpy_helper.from_array(rng.normal(0, 0.01, (filters, 3, 3, 3)).astype(np.float32), "kernels"),
            numpy_helper.from_array(
                np.tile(np.eye(3, dtype=np.float32), (filters // 3 + 1, 1))[:filters], "mix"
            ),
        ]
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        *(
            [
                helper.make_node("Transpose", ["pixels"], ["planes"], perm=[0, 3, 1, 2]),
                helper.make_node("Conv", ["planes", "kernels"], ["features"], pads=[1, 1, 1, 1]),
                helper.make_node("ReduceMean", ["features", "plane_axes"], ["feature_means"], keepdims=0),
                helper.make_node("MatMul", ["feature_means", "mix"], ["means"]),
            ]
            if filters
            else [helper.make_node("ReduceMean", ["pixels", "axes"], ["means"], keepdims=0)]
        ),
        helper.make_node("MatMul", ["means", "weights"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(class_names)])],
        initializer=[
            weights,
            *extra,
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for key, value in {
        "class_names": json.dumps(class_names),
        "source_model": "tiny",
        "source_version": "7",
        "input_scaling": "unit",
        "precision": "fp32",
    }.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path

"""A traced tf.function -> an ONNX graph, with tf2onnx, in bounded memory.

tf2onnx's own `from_function` fails on three things real Keras models carry, so the steps are spelled out here:
- constants captured by the function (a `Normalization` layer's mean and variance are eager tensors, not
  variables) are listed by `from_function` as graph inputs the caller must feed; freezing the concrete function
  ourselves folds them into the graph like every weight;
- Keras compiles some ops with XLA on TensorFlow's CPU (grouped convolutions: ConvNeXt), and grappler never
  inlines a function marked `_XlaMustCompile`/`_noinline`, which leaves `StatefulPartitionedCall` nodes that no
  ONNX runtime can load; the marks are dropped so the function bodies are inlined;
- exact GELU is `Erfc`, which tf2onnx has no handler for; it is `1 - Erf`;
- tf2onnx's transpose optimizer crashes on a convolution followed by the addition of a scalar (MobileNetV3's
  hard-swish: `x + 3`) and then skips its whole pass, leaving a transpose around every convolution; the scalar
  is given the shape [1], which broadcasts the same.
A pass tf2onnx still skips is reported in one line, not with its traceback.
tf2onnx's optimizer loop copies the whole graph, weights included, at every pass and leaves the copies to the
cyclic garbage collector: ConvNeXtTiny peaked at 6.6 GB. Collecting before each pass keeps one copy alive.
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict

import numpy as np
import onnx

_INLINE_BLOCKERS = ("_XlaMustCompile", "_noinline")


def to_onnx(function, input_name: str, output_name: str, opset: int) -> onnx.ModelProto:
    """Convert a tf.function with one input signature and one output to ONNX; tensors keep the given names."""
    import tensorflow as tf
    from tf2onnx import optimizer, tf_loader, tfonnx

    _register_handlers()
    graph_def, inputs, outputs = _frozen(function)
    with tf.Graph().as_default():
        graph_def = tf_loader.tf_optimize(inputs, outputs, graph_def)
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(graph_def, name="")
        del graph_def
        graph = tfonnx.process_tf_graph(
            tf_graph,
            opset=opset,
            input_names=inputs,
            output_names=outputs,
            tensors_to_rename={inputs[0]: input_name, outputs[0]: output_name},
        )
    _scalar_addends_as_vectors(graph)
    graph = optimizer.optimize_graph(graph, catch_errors=True, optimizers=_collecting(optimizer))
    model = graph.make_model("fish-convert")
    gc.collect()
    return model


def _frozen(function):
    """Freeze the concrete function (weights and captured constants become constants) and unmark the
    functions grappler must inline."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = function.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    graph_def = frozen.graph.as_graph_def(add_shapes=True)
    inputs = [t.name for t in frozen.inputs]
    outputs = [t.name for t in frozen.outputs]
    for node in graph_def.node:
        _unmark(node.attr)
    for library_function in graph_def.library.function:
        _unmark(library_function.attr)
        for node in library_function.node_def:
            _unmark(node.attr)
    return graph_def, inputs, outputs


def _unmark(attributes) -> None:
    for key in _INLINE_BLOCKERS:
        if key in attributes:
            del attributes[key]


def _collecting(optimizer) -> OrderedDict:
    """tf2onnx's optimizers, each preceded by a garbage collection of the copies the last pass left."""

    def collected(factory):
        def make():
            gc.collect()
            return factory()

        return make

    return OrderedDict((name, collected(f)) for name, f in optimizer._get_optimizers().items())


def _scalar_addends_as_vectors(graph) -> None:
    """Give each constant scalar added to a tensor its own [1]-shaped copy (same broadcast, same result)."""
    from tf2onnx import utils

    for node in graph.get_nodes():
        if node.type != "Add":
            continue
        for index, addend in enumerate(node.inputs):
            other = graph.get_shape(node.input[1 - index])
            if addend is None or not addend.is_const() or not other:  # unknown or scalar: leave it
                continue
            value = addend.get_tensor_value(as_list=False)
            if value.ndim == 0:
                vector = graph.make_const(utils.make_name(f"{node.name}_addend"), value.reshape(1))
                graph.replace_input(node, node.input[index], vector.output[0], index)


class _OneLine(logging.Filter):
    """tf2onnx logs a pass it skipped with the traceback; the person running the converter gets one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} (tf2onnx skipped it: {type(error).__name__}: {error})"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


logging.getLogger("tf2onnx.optimizer").addFilter(_OneLine())

_registered = False


def _register_handlers() -> None:
    global _registered
    if _registered:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype))
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            node.type = "Sub"
            ctx.replace_inputs(node, [one.output[0], erf.output[0]])

    _registered = True

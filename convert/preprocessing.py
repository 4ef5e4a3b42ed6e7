"""The pixel preprocessing baked into the ONNX graph: uint8 RGB in, what the Keras model was trained on out.

The serving function only decodes and resizes (DESIGN.md), so whatever the team's input pipeline did to the pixels
before the model saw them happens inside the graph. The modes are ours (`unit`, `symmetric`, `none`) and
`keras.applications`' `preprocess_input` modes (`caffe`, `torch`, `tf`), by the names the team already uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convert.errors import InvalidInput

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# caffe mode subtracts the ImageNet mean in 0..255 units, in BGR order (keras.applications.imagenet_utils)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Mode:
    """x' = x[channels] * scale + offset, per channel, on float pixels in 0..255."""

    description: str
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]
    bgr: bool = False  # reverse the channels before scaling (caffe)


def _same(value: float) -> tuple[float, float, float]:
    return (value, value, value)


MODES: dict[str, Mode] = {
    "unit": Mode("x/255", _same(1 / 255), _same(0.0)),
    "symmetric": Mode("x/127.5-1", _same(1 / 127.5), _same(-1.0)),
    "tf": Mode("x/127.5-1 (preprocess_input mode 'tf')", _same(1 / 127.5), _same(-1.0)),
    "torch": Mode(
        "x/255, minus the ImageNet mean, over its std (preprocess_input mode 'torch')",
        tuple(1 / (255 * s) for s in IMAGENET_STD_RGB),
        tuple(-m / s for m, s in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, strict=True)),
    ),
    "caffe": Mode(
        "RGB->BGR, minus the ImageNet mean in 0..255 (preprocess_input mode 'caffe')",
        _same(1.0),
        tuple(-m for m in CAFFE_MEAN_BGR),
        bgr=True,
    ),
    "none": Mode("none: the model scales its own input", _same(1.0), _same(0.0)),
}
DEFAULT = "unit"
SELF_SCALING = "none"


def mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise InvalidInput(f"unknown input scaling '{name}': use one of {', '.join(sorted(MODES))}") from None


def apply(images, name: str, channels: int = 3):
    """The model's float input for uint8 RGB images [N, H, W, 3], as TensorFlow ops: the exported graph and the
    Keras side of the parity check both run this one function, so they cannot disagree about preprocessing.
    A 1-channel model gets the grayscale image Keras's own loaders make (`tf.image.rgb_to_grayscale`)."""
    import tensorflow as tf

    m = mode(name)
    pixels = tf.convert_to_tensor(images)
    if channels == 1:
        pixels = tf.image.rgb_to_grayscale(pixels)
    pixels = tf.cast(pixels, tf.float32)
    if m.bgr and channels == 3:
        pixels = tf.reverse(pixels, axis=[-1])
    scale, offset = (np.asarray(v[:channels], np.float32) for v in (m.scale, m.offset))
    return pixels * scale + offset


def scales_itself(model) -> bool:
    """Whether the model's first real layer is a Rescaling or Normalization (MobileNetV3, EfficientNet,
    ConvNeXt and any model built with `include_preprocessing` or its own scaling layer). Augmentation
    layers (RandomFlip, ...) are inactive at inference and are looked through; nested models too."""
    import keras

    scaling = (keras.layers.Rescaling, keras.layers.Normalization)
    for layer in _leading_layers(model):
        if isinstance(layer, scaling):
            return True
        if layer.weights:  # the first layer that computes something: the model starts with it
            return False
    return False


def _leading_layers(model):
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers") and layer.layers:
            yield from _leading_layers(layer)
        else:
            yield layer

"""The Keras side: load the registered model (with the team's own layers) and read what the export needs."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from convert.errors import InvalidInput

# Parity tolerance (max |Δprobability|) by the dtype the model computes in, wide enough for the rounding of a
# correct conversion and narrow enough for a wrong op (top-1 must also agree wherever the reference's top two are
# further apart than the tolerance; see parity.py). float32: ResNet50 with real BatchNorm statistics on caffe-mode
# input differs by 1.03e-4 between TensorFlow and onnxruntime, and tf2onnx's approximation of area resizing by
# 6.1e-3. float16 keeps ~3 significant digits and each runtime rounds in its own places: a MobileNetV2 under
# mixed_float16 differs by 0.029 on an Intel AVX-512 CPU and by 0.052 on an AMD AVX2 one, where Keras's own
# float16 answer differs from the same weights computed in float32 by 0.064 (onnxruntime's by 0.041), so 0.1.
TOLERANCE_BY_COMPUTE_DTYPE = {"float32": 1e-3, "float16": 1e-1, "bfloat16": 1e-1}
PRECISION_BY_COMPUTE_DTYPE = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class InputSpec:
    """The image the model takes: height, width and 1 (grayscale) or 3 (RGB) channels."""

    height: int
    width: int
    channels: int

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def color_mode(self) -> str:
        return "grayscale" if self.channels == 1 else "rgb"


def import_modules(names: list[str]) -> None:
    """Import the team's modules (a module name, or a .py file) so their registered custom layers exist."""
    for name in names:
        try:
            if name.endswith(".py"):
                path = Path(name)
                if not path.is_file():
                    raise InvalidInput(f"--import {name}: no such file")
                spec = importlib.util.spec_from_file_location(path.stem, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[path.stem] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except InvalidInput:
            raise
        except Exception as exc:  # the team's code: any error it raises means "cannot import it"
            raise InvalidInput(
                f"--import {name}: {type(exc).__name__}: {_first_line(exc)} (a module name on PYTHONPATH or a "
                ".py file)"
            ) from exc


def load(uri: str, trust_lambda: bool):
    """The Keras model at an MLflow URI; a model Keras will not rebuild is an exit-2 message that says why."""
    import mlflow

    kwargs = {"safe_mode": False} if trust_lambda else {}
    try:
        return mlflow.keras.load_model(uri, load_model_kwargs=kwargs)
    except Exception as exc:  # Keras raises TypeError/ValueError with prose; the cause is in the text
        raise _load_error(exc) from exc


def _load_error(exc: Exception) -> Exception:
    text = str(exc)
    if "Lambda" in text and "safe_mode" in text:
        return InvalidInput(
            "the Keras model contains a Lambda layer, whose Python code Keras runs only from a trusted file: "
            "pass --trust-lambda if you trust this model's artifact"
        )
    unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if unknown or "could not be deserialized" in text:
        what = f"'{unknown.group(1)}'" if unknown else "a layer"
        return InvalidInput(
            f"the Keras model uses {what}, which is not a Keras built-in and is not registered: pass --import "
            "MODULE (or FILE.py) with the code that defines it (decorated with "
            "@keras.saving.register_keras_serializable)"
        )
    return InvalidInput(f"Keras cannot load the model: {type(exc).__name__}: {_first_line(exc)}")


def input_spec(model, size: tuple[int, int] | None) -> InputSpec:
    """The image input: fixed H and W from the model, or `size` for a model that takes any size."""
    shape = tuple(model.inputs[0].shape) if len(model.inputs) == 1 else ()
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise InvalidInput(
            f"the Keras model's input is {_shape(model)}; only one image input (batch, height, width, 1 or 3 "
            "channels) can be served"
        )
    height, width = shape[1], shape[2]
    if size is not None:
        if (height, width) != (None, None) and (height, width) != size:
            raise InvalidInput(
                f"--input-size {size[0]}x{size[1]} does not match the model's fixed input {height}x{width}"
            )
        height, width = size
    if height is None or width is None:
        raise InvalidInput(
            f"the Keras model takes images of any size {_shape(model)}: pass --input-size HxW (the size it was "
            "trained at), which the served model will resize every image to"
        )
    return InputSpec(int(height), int(width), int(shape[3]))


def compute_dtype(model) -> str:
    """The dtype the model computes in: float16 or bfloat16 if any layer does (mixed precision), else
    float32."""
    dtypes = {getattr(layer, "compute_dtype", "float32") for layer in _all_layers(model)}
    for reduced in ("float16", "bfloat16"):
        if reduced in dtypes:
            return reduced
    return "float32"


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)


def _shape(model) -> str:
    shapes = [tuple(i.shape) for i in model.inputs]
    return ", ".join(str(s).replace("None", "any") for s in shapes)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""

"""The Open Inference Protocol's tensors (KServe v2 REST, with Triton's binary tensor data extension): an infer
request's body in, the images it carries out; the service's outcomes in, an infer response's body out. No HTTP
here, and no model: the model's card says what fits.

The one input, `image`, is either pixels, UINT8 [N, H, W, 3] at the model's size (JSON `data` flat or nested,
row-major), or encoded images (JPEG, PNG, ...), BYTES [N]. BYTES elements travel in the binary extension (each a
4-byte little-endian length, then the bytes: what tritonclient sends) or, in JSON, as base64 strings when the
input's `parameters` (or, for clients that cannot set those, the request's) say `"content_type": "base64"`.
A request carries at most MAX_BATCH_FILES images, as pixels or files. The outputs are `probabilities`, FP32
[N, C] in the model's class order, and `class_name`, BYTES [N]."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from function.inference.outcome import Outcome
from function.model.classifier import ModelCard
from function.protocols import tensor_data
from function.protocols.tensor_data import BadTensorData

INPUT = "image"
OUTPUTS = ("probabilities", "class_name")
PLATFORM = "onnxruntime_onnx"
BINARY_EXTENSION = "binary_tensor_data"
SMALL_JSON_BYTES = 64 * 1024  # the most JSON an input's shape or parameters, or the request's, may take


class InvalidRequest(ValueError):
    """The request does not follow the protocol, or its tensor does not fit the model (the client's fault)."""


class TensorMetadata(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]  # -1: any size


class ServerMetadata(msgspec.Struct):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(msgspec.Struct):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, list[str]]  # class_names: the order of the probabilities' columns


class Error(msgspec.Struct):
    error: str


class ResponseOutput(msgspec.Struct, omit_defaults=True):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, int] | None = None  # binary_data_size, when the tensor follows the JSON as binary
    data: list | None = None  # flat, row-major; absent when sent as binary


class InferResponse(msgspec.Struct, omit_defaults=True):
    model_name: str
    model_version: str
    outputs: list[ResponseOutput]
    id: str | None = None  # the request's, when it gave one
    parameters: dict[str, str] | None = (
        None  # prediction_ids: the prediction log's ids, comma-separated, in order
    )


# A body may be tens of MB: no part of it may become a Python object per few bytes (a list of numbers is ~12x
# its JSON). The parts that are small by nature stay raw until their size is checked, the data until the tensor
# is known, and a second input stops the decoder (a tuple of one).
class _Input(msgspec.Struct):
    name: str
    shape: msgspec.Raw  # list[int]
    datatype: str
    parameters: msgspec.Raw = msgspec.Raw()  # dict[str, Any]
    data: msgspec.Raw = msgspec.Raw()  # empty: not sent


class _Output(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = {}


class _Request(msgspec.Struct):
    inputs: tuple[_Input]
    id: str | None = None
    parameters: msgspec.Raw = msgspec.Raw()  # dict[str, Any]
    outputs: msgspec.Raw = msgspec.Raw()  # list[_Output]


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    pixels: np.ndarray | None  # UINT8 [N, H, W, 3], or
    encoded: list[bytes] | None  # encoded image files
    outputs: dict[str, bool]  # the outputs to answer with, in order: name -> as binary


def model_metadata(name: str, version: str, card: ModelCard) -> ModelMetadata:
    height, width = card.input_size
    return ModelMetadata(
        name=name,
        versions=[version],
        platform=PLATFORM,
        inputs=[TensorMetadata(INPUT, "UINT8", [-1, height, width, 3])],
        outputs=[
            TensorMetadata("probabilities", "FP32", [-1, len(card.class_names)]),
            TensorMetadata("class_name", "BYTES", [-1]),
        ],
        parameters={"class_names": list(card.class_names)},
    )


def decode_request(body: bytes, json_length: int | None, card: ModelCard, max_images: int) -> InferRequest:
    """`json_length`: the Inference-Header-Content-Length header, when binary tensor data follows the JSON.
    `max_images`: how many images one request may carry (MAX_BATCH_FILES). CPU-bound for a large body: call it
    on a worker thread (it lets the GIL go while it reads JSON pixels)."""
    if json_length is not None and not 0 < json_length <= len(body):
        raise InvalidRequest(
            f"Inference-Header-Content-Length is {json_length}, but the body has {len(body)} bytes"
        )
    header, binary = (body, b"") if json_length is None else (body[:json_length], body[json_length:])
    request = _decode(header)
    (tensor,) = request.inputs
    if tensor.name != INPUT:
        raise InvalidRequest(f"this model takes one input, '{INPUT}'; the request has '{tensor.name}'")
    shape = _small(tensor.shape, list[int], f"input '{INPUT}' shape")
    parameters = _small(tensor.parameters, dict, f"input '{INPUT}' parameters")
    defaults = _small(request.parameters, dict, "the request's parameters")
    raw = _binary(tensor.data, parameters, binary)
    try:
        if tensor.datatype == "UINT8":
            pixels, encoded = _pixels(shape, tensor.data, raw, card.input_size, max_images), None
        elif tensor.datatype == "BYTES":
            base64_sent = parameters.get("content_type", defaults.get("content_type")) == "base64"
            pixels, encoded = None, _encoded(shape, tensor.data, raw, base64_sent, max_images)
        else:
            height, width = card.input_size
            raise InvalidRequest(
                f"input '{INPUT}' is UINT8 [N, {height}, {width}, 3] pixels or BYTES [N] encoded images; "
                f"got {tensor.datatype}"
            )
    except BadTensorData as exc:
        raise InvalidRequest(f"input '{INPUT}' {exc}") from exc
    return InferRequest(request.id, pixels, encoded, _requested(request.outputs, defaults))


def encode_response(
    request: InferRequest, outcomes: list[Outcome], class_names: tuple[str, ...]
) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON when binary tensor data follows it (else None)."""
    probabilities = np.array(
        [[outcome.prediction.probabilities[name] for name in class_names] for outcome in outcomes], "<f4"
    )
    best = [outcome.prediction.class_name for outcome in outcomes]
    tensors = {  # name: datatype, shape, JSON data, binary data
        "probabilities": (
            "FP32",
            list(probabilities.shape),
            probabilities.ravel().tolist(),
            probabilities.tobytes(),
        ),
        "class_name": ("BYTES", [len(best)], best, tensor_data.length_prefixed(best)),
    }
    outputs, binary = [], []
    for name, as_binary in request.outputs.items():
        datatype, shape, data, raw = tensors[name]
        if as_binary:
            outputs.append(ResponseOutput(name, datatype, shape, parameters={"binary_data_size": len(raw)}))
            binary.append(raw)
        else:
            outputs.append(ResponseOutput(name, datatype, shape, data=data))
    ids = ",".join(str(outcome.prediction_id) for outcome in outcomes)
    response = InferResponse(outcomes[0].model_name, outcomes[0].model_version, outputs, request.id,
                             {"prediction_ids": ids})  # fmt: skip
    header = msgspec.json.encode(response)
    return (header + b"".join(binary), len(header)) if binary else (header, None)


def _decode(header: bytes) -> _Request:
    try:
        return msgspec.json.decode(header, type=_Request)
    except msgspec.ValidationError as exc:
        if str(exc).endswith("- at `$.inputs`"):  # the tuple's length
            raise InvalidRequest(f"this model takes one input, '{INPUT}': send exactly one") from exc
        raise InvalidRequest(f"the body is not an inference request: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the body is not an inference request: {exc}") from exc


def _small(json: msgspec.Raw, type: Any, what: str) -> Any:
    """A part of the request that is small by nature; not sent, its type's empty value."""
    if len(json) > SMALL_JSON_BYTES:
        raise InvalidRequest(f"{what} take {len(json):,} bytes of JSON, more than {SMALL_JSON_BYTES:,}")
    try:
        return msgspec.json.decode(json, type=type) if len(json) else type()
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"{what}: {exc}") from exc


def _sent(data: msgspec.Raw) -> bool:
    """Whether the input has JSON data: a missing field and null have none."""
    return len(data) > 4 or bytes(data) not in (b"", b"null")


def _binary(data: msgspec.Raw, parameters: dict[str, Any], binary: bytes) -> bytes | None:
    """The input's binary data, or None when it is in the JSON."""
    size = parameters.get("binary_data_size")
    if size is None:
        if binary:
            raise InvalidRequest(
                f"{len(binary)} bytes follow the JSON, but no input declares binary_data_size"
            )
        if not _sent(data):
            raise InvalidRequest(f"input '{INPUT}' has no data (neither 'data' nor binary_data_size)")
        return None
    if not isinstance(size, int) or size != len(binary):
        raise InvalidRequest(
            f"input '{INPUT}' declares binary_data_size {size!r}, but {len(binary)} bytes follow the JSON "
            "(send the Inference-Header-Content-Length header with the JSON's length)"
        )
    return binary


def _pixels(
    shape: list[int], data: msgspec.Raw, raw: bytes | None, size: tuple[int, int], max_images: int
) -> np.ndarray:
    if len(shape) != 4 or shape[1:] != [*size, 3] or not 1 <= shape[0] <= max_images:
        raise InvalidRequest(
            f"input '{INPUT}' as UINT8 must have shape [N, {size[0]}, {size[1]}, 3], N from 1 to {max_images} "
            f"(MAX_BATCH_FILES); got {shape}"
        )
    if raw is None:
        return tensor_data.read_uint8(data, shape)
    if len(raw) != math.prod(shape):
        raise InvalidRequest(f"input '{INPUT}' has {len(raw)} values; shape {shape} needs {math.prod(shape)}")
    return np.frombuffer(raw, np.uint8).reshape(shape)


def _encoded(
    shape: list[int], data: msgspec.Raw, raw: bytes | None, base64_sent: bool, max_images: int
) -> list[bytes]:
    if len(shape) != 1 or not 1 <= shape[0] <= max_images:
        raise InvalidRequest(
            f"input '{INPUT}' as BYTES must have shape [N], N from 1 to {max_images} (MAX_BATCH_FILES); "
            f"got {shape}"
        )
    if raw is not None:
        elements = tensor_data.split_length_prefixed(raw)
    elif base64_sent:
        elements = tensor_data.base64_strings(data, shape[0])
    else:
        raise InvalidRequest(
            f"input '{INPUT}' as BYTES carries encoded image files: send them with the binary tensor data "
            'extension, or base64-encoded in JSON with "parameters": {"content_type": "base64"}'
        )
    if len(elements) != shape[0]:
        raise InvalidRequest(f"input '{INPUT}' has {len(elements)} elements; its shape says {shape[0]}")
    return elements


def _requested(outputs_json: msgspec.Raw, defaults: dict[str, Any]) -> dict[str, bool]:
    """Every output, unless the request names some; binary as each asks, else as the request's default."""
    default = bool(defaults.get("binary_data_output", False))
    outputs = _small(outputs_json, list[_Output], "the request's outputs")
    if not outputs:
        return dict.fromkeys(OUTPUTS, default)
    requested = {}
    for output in outputs:
        if output.name not in OUTPUTS:
            raise InvalidRequest(
                f"unknown output '{output.name}': this model's outputs are {', '.join(OUTPUTS)}"
            )
        if output.parameters.get("classification"):
            raise InvalidRequest("the classification extension is not supported: ask for 'class_name'")
        requested[output.name] = bool(output.parameters.get("binary_data", default))
    return requested

"""The Open Inference Protocol's tensors (KServe v2 REST, with Triton's binary tensor data extension): an infer
request's body in, the images it carries out; the service's outcomes in, an infer response's body out. No HTTP
here, and no model: the model's card says what fits.

The one input, `image`, is either pixels, UINT8 [N, H, W, 3] at the model's size (JSON `data` flat or nested,
row-major), or encoded images (JPEG, PNG, ...), BYTES [N]. BYTES elements travel in the binary extension (each a
4-byte little-endian length, then the bytes: what tritonclient sends) or, in JSON, as base64 strings when the
input's `parameters` (or, for clients that cannot set those, the request's) say `"content_type": "base64"`.
The outputs are `probabilities`, FP32 [N, C] in the model's class order, and `class_name`, BYTES [N]."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from function.inference.outcome import Outcome
from function.model.classifier import ModelCard

INPUT = "image"
OUTPUTS = ("probabilities", "class_name")
PLATFORM = "onnxruntime_onnx"
BINARY_EXTENSION = "binary_tensor_data"


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


class _Input(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = {}
    data: Any = None


class _Output(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = {}


class _Request(msgspec.Struct):
    inputs: list[_Input]
    id: str | None = None
    parameters: dict[str, Any] = {}
    outputs: list[_Output] = []


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


def decode_request(body: bytes, json_length: int | None, card: ModelCard, max_encoded: int) -> InferRequest:
    """`json_length`: the Inference-Header-Content-Length header, when binary tensor data follows the JSON.
    `max_encoded`: how many encoded images one request may carry (each is decoded on its own)."""
    if json_length is not None and not 0 < json_length <= len(body):
        raise InvalidRequest(
            f"Inference-Header-Content-Length is {json_length}, but the body has {len(body)} bytes"
        )
    header, binary = (body, b"") if json_length is None else (body[:json_length], body[json_length:])
    try:
        request = msgspec.json.decode(header, type=_Request)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the body is not an inference request: {exc}") from exc
    if [tensor.name for tensor in request.inputs] != [INPUT]:
        names = ", ".join(repr(tensor.name) for tensor in request.inputs) or "none"
        raise InvalidRequest(f"this model takes one input, '{INPUT}'; the request has {names}")
    (tensor,) = request.inputs
    raw = _binary(tensor, binary)
    if tensor.datatype == "UINT8":
        pixels, encoded = _pixels(tensor, raw, card.input_size), None
    elif tensor.datatype == "BYTES":
        pixels, encoded = None, _encoded(tensor, raw, request.parameters, max_encoded)
    else:
        height, width = card.input_size
        raise InvalidRequest(
            f"input '{INPUT}' is UINT8 [N, {height}, {width}, 3] pixels or BYTES [N] encoded images; "
            f"got {tensor.datatype}"
        )
    return InferRequest(request.id, pixels, encoded, _requested(request))


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
        "class_name": ("BYTES", [len(best)], best, _length_prefixed(best)),
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


def _binary(tensor: _Input, binary: bytes) -> bytes | None:
    """The input's binary data, or None when it is in the JSON."""
    size = tensor.parameters.get("binary_data_size")
    if size is None:
        if binary:
            raise InvalidRequest(
                f"{len(binary)} bytes follow the JSON, but no input declares binary_data_size"
            )
        if tensor.data is None:
            raise InvalidRequest(f"input '{INPUT}' has no data (neither 'data' nor binary_data_size)")
        return None
    if not isinstance(size, int) or size != len(binary):
        raise InvalidRequest(
            f"input '{INPUT}' declares binary_data_size {size!r}, but {len(binary)} bytes follow the JSON "
            "(send the Inference-Header-Content-Length header with the JSON's length)"
        )
    return binary


def _pixels(tensor: _Input, raw: bytes | None, size: tuple[int, int]) -> np.ndarray:
    shape = tensor.shape
    if len(shape) != 4 or shape[1:] != [*size, 3] or shape[0] < 1:
        raise InvalidRequest(
            f"input '{INPUT}' as UINT8 must have shape [N, {size[0]}, {size[1]}, 3]; got {shape}"
        )
    if raw is not None:
        values = np.frombuffer(raw, np.uint8)
    else:
        try:
            values = np.asarray(tensor.data).ravel()
        except ValueError as exc:  # ragged nested lists
            raise InvalidRequest(f"input '{INPUT}' data is not a regular array: {exc}") from exc
        if values.dtype.kind not in "iu" or (values.size and not 0 <= values.min() <= values.max() <= 255):
            raise InvalidRequest(f"input '{INPUT}' data must be integers from 0 to 255 (UINT8)")
    if values.size != math.prod(shape):
        raise InvalidRequest(
            f"input '{INPUT}' has {values.size} values; shape {shape} needs {math.prod(shape)}"
        )
    return values.astype(np.uint8, copy=False).reshape(shape)


def _encoded(tensor: _Input, raw: bytes | None, request_parameters: dict, max_encoded: int) -> list[bytes]:
    if len(tensor.shape) != 1 or not 1 <= tensor.shape[0] <= max_encoded:
        raise InvalidRequest(
            f"input '{INPUT}' as BYTES must have shape [N], N from 1 to {max_encoded} (MAX_BATCH_FILES); "
            f"got {tensor.shape}"
        )
    if raw is not None:
        elements = _split_length_prefixed(raw)
    elif tensor.parameters.get("content_type", request_parameters.get("content_type")) == "base64":
        elements = [_from_base64(index, element) for index, element in enumerate(_strings(tensor.data))]
    else:
        raise InvalidRequest(
            f"input '{INPUT}' as BYTES carries encoded image files: send them with the binary tensor data "
            'extension, or base64-encoded in JSON with "parameters": {"content_type": "base64"}'
        )
    if len(elements) != tensor.shape[0]:
        raise InvalidRequest(
            f"input '{INPUT}' has {len(elements)} elements; its shape says {tensor.shape[0]}"
        )
    return elements


def _strings(data: Any) -> list[str]:
    if not isinstance(data, list) or not all(isinstance(element, str) for element in data):
        raise InvalidRequest(f"input '{INPUT}' data must be a flat list of base64 strings")
    return data


def _from_base64(index: int, element: str) -> bytes:
    try:
        return base64.b64decode(element, validate=True)
    except binascii.Error as exc:
        raise InvalidRequest(f"input '{INPUT}' element {index} is not valid base64: {exc}") from exc


def _split_length_prefixed(raw: bytes) -> list[bytes]:
    elements, at = [], 0
    while at < len(raw):
        length = int.from_bytes(raw[at : at + 4], "little")
        if at + 4 + length > len(raw):
            raise InvalidRequest(
                f"input '{INPUT}' element {len(elements)} is cut short: BYTES elements are a 4-byte little-endian "
                "length followed by that many bytes"
            )
        elements.append(raw[at + 4 : at + 4 + length])
        at += 4 + length
    return elements


def _length_prefixed(strings: list[str]) -> bytes:
    return b"".join(len(data).to_bytes(4, "little") + data for data in (s.encode() for s in strings))


def _requested(request: _Request) -> dict[str, bool]:
    """Every output, unless the request names some; binary as each asks, else as the request's default."""
    default = bool(request.parameters.get("binary_data_output", False))
    if not request.outputs:
        return dict.fromkeys(OUTPUTS, default)
    requested = {}
    for output in request.outputs:
        if output.name not in OUTPUTS:
            raise InvalidRequest(
                f"unknown output '{output.name}': this model's outputs are {', '.join(OUTPUTS)}"
            )
        if output.parameters.get("classification"):
            raise InvalidRequest("the classification extension is not supported: ask for 'class_name'")
        requested[output.name] = bool(output.parameters.get("binary_data", default))
    return requested

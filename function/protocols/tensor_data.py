"""An input tensor's data as it travels: UINT8 values as JSON text, BYTES elements length-prefixed (Triton's binary
extension) or as base64 strings in JSON. Wire forms only; which tensor a model takes is `oip`'s.

JSON pixels are read into a uint8 array without a Python object per number: decoded to lists, they took several
times their text in memory, and the decoder held the GIL from the first byte to the last. Here the text is read
in pieces of about `PIECE_BYTES`, each cut after a comma so that no number is split. A piece's structure (its
brackets and commas, and one mark per number) must be the next stretch of what the shape's array has; then numpy
parses its numbers into their place. On a worker thread this lets the GIL go between pieces, so the event loop
keeps answering while a large tensor is read."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterator

import msgspec
import numpy as np

PIECE_BYTES = 256 * 1024  # more took no less time, and held the GIL longer at a time
# The most JSON text a UINT8 value needs: "255, " is five bytes, and a nested array's brackets add two thirds of
# a byte ("[255, 255, 255], " is 17 bytes for 3 values). What json.dumps and tritonclient send fits.
JSON_BYTES_PER_VALUE = 6
NOT_UINT8 = "data must be integers from 0 to 255 (UINT8)"

_NUMBER, _OPEN = b"v["
_MARKS = bytes.maketrans(b"0123456789", b"v" * 10)  # every digit a number mark
_WHITESPACE = b" \t\n\r"
_NO_BRACKETS = bytes.maketrans(b"[]", b"  ")


class BadTensorData(ValueError):
    """Data that is not what its tensor declares; the message follows "input 'image' "."""


def read_uint8(text: msgspec.Raw, shape: list[int], piece_bytes: int = PIECE_BYTES) -> np.ndarray:
    """`text`: the JSON of a tensor's data (valid JSON: the request's decoder has read it), flat or nested exactly
    as `shape`."""
    view = memoryview(text)
    if bytes(view[:1]) != b"[" or bytes(view[-1:]) != b"]":
        raise BadTensorData(f"data must be an array, flat or nested as the shape {shape}")
    reader = _Reader(shape)
    for piece in _pieces(view, 1, len(view) - 1, piece_bytes):
        reader.read(piece)
    return reader.result()


class _Reader:
    """The text between the outer brackets: units (numbers when flat, arrays of shape[1:] when nested), a comma
    after each but the last."""

    def __init__(self, shape: list[int]):
        self.shape, self.values = shape, np.empty(math.prod(shape), np.uint8)
        self.period: np.ndarray | None = None  # one unit and its comma, once the first piece shows which
        self.marks = self.numbers = 0  # structure marks and numbers read so far

    def read(self, piece: bytes) -> None:
        structure = _structure(piece)
        if not structure.size:
            return
        if self.period is None:
            unit = _nested(self.shape[1:]) if structure[0] == _OPEN else b"v"
            self.period = np.frombuffer(unit + b",", np.uint8)
        phase = np.roll(self.period, -(self.marks % self.period.size))
        expected = np.tile(phase, -(-structure.size // phase.size))[: structure.size]
        if not np.array_equal(structure, expected):
            raise self._irregular()
        self.marks += structure.size
        count = int(np.count_nonzero(structure == _NUMBER))
        if count and self.numbers + count <= self.values.size:  # past the end, only counted: to say how many
            numbers = np.fromstring(piece.translate(_NO_BRACKETS), np.int64, sep=",")
            if numbers.size != count:
                raise self._irregular()
            if numbers.max() > 255:
                raise BadTensorData(NOT_UINT8)
            self.values[self.numbers : self.numbers + count] = numbers
        self.numbers += count

    def result(self) -> np.ndarray:
        if self.numbers != self.values.size:
            if self._nested:
                raise self._irregular()
            raise BadTensorData(f"has {self.numbers} values; shape {self.shape} needs {self.values.size}")
        return self.values.reshape(self.shape)

    @property
    def _nested(self) -> bool:
        return self.period is not None and self.period.size > 2

    def _irregular(self) -> BadTensorData:
        return BadTensorData(
            f"data is not a regular array of shape {self.shape} (flat, or nested as the shape)"
        )


def _structure(piece: bytes) -> np.ndarray:
    """The piece's brackets and commas, and a mark for each number. A sign, point or exponent, a string, true,
    false, null or an object is no UINT8 value."""
    marks = piece.translate(_MARKS, _WHITESPACE)
    if marks.translate(None, b"v,[]"):
        raise BadTensorData(NOT_UINT8)
    array = np.frombuffer(marks, np.uint8)
    number = array == _NUMBER
    first = np.ones(array.size, bool)
    first[1:] = ~(number[1:] & number[:-1])  # a number's digits are never apart (JSON)
    return array[first]


def _nested(shape: list[int]) -> bytes:
    unit = b"v"
    for size in reversed(shape):
        unit = b"[" + b",".join([unit] * size) + b"]"
    return unit


def _pieces(view: memoryview, start: int, end: int, piece_bytes: int) -> Iterator[bytes]:
    """view[start:end] in pieces of about `piece_bytes`, each ending after a comma (the last at `end`)."""
    while start < end:
        size = piece_bytes
        while True:
            piece = bytes(view[start : min(start + size, end)])
            cut = len(piece) if start + size >= end else piece.rfind(b",") + 1
            if cut:
                break
            size *= 2  # no comma yet: a long stretch of whitespace, or one long number
        yield piece[:cut]
        start += cut


def base64_strings(text: msgspec.Raw, count: int) -> list[bytes]:
    """`count` strings: as a tuple of that length, so that the decoder stops at one more (a list of many short
    strings takes ten times its JSON)."""
    try:
        strings = msgspec.json.decode(text, type=tuple[(str,) * count])
    except msgspec.ValidationError:
        raise BadTensorData(f"data must be a flat list of {count} base64 strings (its shape)") from None
    return [_from_base64(index, string) for index, string in enumerate(strings)]


def _from_base64(index: int, string: str) -> bytes:
    try:
        return base64.b64decode(string, validate=True)
    except binascii.Error as exc:
        raise BadTensorData(f"element {index} is not valid base64: {exc}") from exc


def split_length_prefixed(raw: bytes) -> list[bytes]:
    elements, at = [], 0
    while at < len(raw):
        length = int.from_bytes(raw[at : at + 4], "little")
        if at + 4 + length > len(raw):
            raise BadTensorData(
                f"element {len(elements)} is cut short: BYTES elements are a 4-byte little-endian length followed "
                "by that many bytes"
            )
        elements.append(raw[at + 4 : at + 4 + length])
        at += 4 + length
    return elements


def length_prefixed(strings: list[str]) -> bytes:
    return b"".join(len(data).to_bytes(4, "little") + data for data in (s.encode() for s in strings))

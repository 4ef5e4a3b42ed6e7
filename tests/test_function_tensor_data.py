"""tensor_data.read_uint8 against an oracle over any JSON array: a regular array of integers from 0 to 255, flat
or nested as the declared shape, in any JSON whitespace and read in pieces of any size, comes back as that array;
anything else (ragged, nested otherwise, too many or too few values, floats, strings, booleans, null, numbers past
255) is BadTensorData, never another error and never a wrong array."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from function.protocols import tensor_data
from function.protocols.tensor_data import BadTensorData

PROPERTY = settings(max_examples=400, derandomize=True, database=None, deadline=None)
SHAPES = st.lists(st.integers(1, 3), min_size=3, max_size=3).map(lambda dims: [*dims, 3])
WHITESPACE = st.text(" \t\n\r", max_size=2)
LEAVES = st.one_of(
    st.integers(0, 255), st.integers(0, 255), st.just(256), st.integers(256, 10**20), st.floats(0, 255), st.booleans(),
    st.none(), st.text("0123456789ab", max_size=3),
)  # fmt: skip


def shape_of(value) -> list[int] | None:
    """The shape of a regular array of integers (no booleans) from 0 to 255; None for anything else."""
    if type(value) is int:
        return [] if 0 <= value <= 255 else None
    if not isinstance(value, list):
        return None
    shapes = [shape_of(element) for element in value]
    if None in shapes or any(shape != shapes[0] for shape in shapes):
        return None
    return [len(value), *(shapes[0] if shapes else [])]


@st.composite
def tensors(draw) -> tuple[bytes, list[int], object]:
    """JSON text, its declared shape, and the value it spells: a regular array of the shape (flat or nested) or
    one spoiled at a random place."""
    shape = draw(SHAPES)
    values = np.array(
        draw(st.lists(st.integers(0, 255), min_size=math.prod(shape), max_size=math.prod(shape)))
    )
    value = values.tolist() if draw(st.booleans()) else values.reshape(shape).tolist()
    if draw(st.booleans()):
        value = spoil(draw, value)
    return dumps(draw, value).encode(), shape, value


def spoil(draw, value):
    """One change somewhere in the nesting: a leaf replaced, an element dropped, added or wrapped in a list."""
    if not isinstance(value, list) or (value and draw(st.booleans())):
        if isinstance(value, list):
            at = draw(st.integers(0, len(value) - 1))
            return [*value[:at], spoil(draw, value[at]), *value[at + 1 :]]
        return draw(st.one_of(LEAVES, st.just([value])))
    change = draw(st.sampled_from(["drop", "add", "wrap"]))
    if change == "drop":
        return value[1:]
    if change == "add":
        return [*value, draw(st.one_of(LEAVES, st.just(value[0]), st.just(value[:1])))]
    return [value]


def dumps(draw, value) -> str:
    if isinstance(value, list):
        elements = [draw(WHITESPACE) + dumps(draw, element) + draw(WHITESPACE) for element in value]
        return "[" + ",".join(elements) + draw(WHITESPACE) + "]"
    return msgspec.json.encode(value).decode()


@PROPERTY
@given(tensors(), st.sampled_from([1, 2, 3, 7, 64, tensor_data.PIECE_BYTES]))
def test_read_uint8_reads_what_the_shape_declares_and_refuses_the_rest(tensor, piece_bytes):
    text, shape, value = tensor
    spelled = shape_of(value)
    if spelled in (shape, [math.prod(shape)]):
        got = tensor_data.read_uint8(msgspec.Raw(text), shape, piece_bytes)
        np.testing.assert_array_equal(got, np.array(value, np.uint8).reshape(shape))
    else:
        with pytest.raises(BadTensorData):
            tensor_data.read_uint8(msgspec.Raw(text), shape, piece_bytes)

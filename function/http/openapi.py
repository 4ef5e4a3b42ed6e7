"""The pieces the doors' OpenAPI text is made of (each door's own text is its `DOCS`, beside its handler): error
answers as problems or as the Open Inference Protocol's errors, and the multipart bodies Litestar cannot infer."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from function.protocols import oip
from function.protocols.wire import Problem

BINARY = Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]


def problem(description: str) -> ResponseSpec:
    """An error answered as an RFC 9457 problem."""
    return ResponseSpec(
        data_container=Problem,
        description=description,
        media_type="application/problem+json",
        generate_examples=False,
    )


def oip_error(description: str) -> ResponseSpec:
    """An error answered as the Open Inference Protocol's `{"error": "..."}`."""
    return ResponseSpec(data_container=oip.Error, description=description, generate_examples=False)


def multipart_operation(file: Schema) -> type[Operation]:
    """The request body, a form with the field `file` (the handlers read the form themselves, so Litestar cannot
    infer it)."""
    body = RequestBody(
        required=True,
        content={
            "multipart/form-data": OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.OBJECT, properties={"file": file}, required=["file"])
            )
        },
    )

    @dataclass
    class MultipartOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return MultipartOperation


NOT_LOADED = problem("The model is not loaded (yet): Retry-After says when to try again")

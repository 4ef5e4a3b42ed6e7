"""What several doors take from a request: `top_k`, the browser's `X-Client-Id`, and the multipart upload."""

from __future__ import annotations

import re
from typing import Annotated

from litestar import Request
from litestar.params import Parameter

from function.http.multipart import read_form
from function.http.problems import MissingClientId, MissingFile

CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
TopK = Annotated[
    int | None, Parameter(description="Answer with the N most likely classes (1 to the model's classes)")
]
ClientId = Annotated[
    str | None,
    Parameter(
        header="X-Client-Id",
        required=False,
        description="The random id a browser keeps: its history lists the predictions made with it",
        schema_extra={
            "pattern": f"^{CLIENT_ID.pattern}$"
        },  # checked by client_id(), with a message that says why
    ),
]


def client_id(value: str | None) -> str | None:
    """The browser's X-Client-Id, if it sent one (curl does not): its history lists this prediction."""
    if value is not None and not CLIENT_ID.fullmatch(value):
        raise MissingClientId(
            "X-Client-Id must be a random id of 8 to 64 letters, digits, '-' or '_' that this browser keeps"
        )
    return value


def own_client_id(header: str | None) -> str:
    """A history read's X-Client-Id, which it cannot do without."""
    value = client_id(header)
    if value is None:
        raise MissingClientId("send X-Client-Id: the random id this browser keeps and sends with /predict")
    return value


def request_id(request: Request) -> str | None:
    return request.headers.get("x-request-id")


async def uploaded_file(request: Request) -> bytes:
    """The (first) file in the multipart field `file`."""
    form = await read_form(request, "send the image as multipart/form-data in a field named 'file'")
    for part in form.named("file"):
        if part.filename is not None:
            return part.data
    raise MissingFile(f"no file in the multipart field 'file' (fields sent: {form.names()})")

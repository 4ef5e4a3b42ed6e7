"""POST /predict: one image in the multipart field `file` (the team's `curl -F file=@fish.jpg .../predict`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from litestar import Request, post
from litestar.datastructures import UploadFile
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from function import images, problems
from function.service import PredictionService, RequestContext
from function.wire import PredictionResponse

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
BINARY = Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]

ERRORS = {
    400: problems.spec("top_k out of range, or a query parameter of the wrong type"),
    413: problems.spec("File larger than MAX_UPLOAD_BYTES, or image with more pixels than MAX_IMAGE_PIXELS"),
    415: problems.spec("Empty upload, not an image, or not multipart/form-data"),
    422: problems.spec("Truncated or corrupt image, or no multipart field named 'file'"),
    503: problems.spec("The model is not loaded (yet)"),
}


def multipart_operation(file: Schema) -> type[Operation]:
    """The request body in the OpenAPI document, a form with the field `file` (the handlers read the form
    themselves, so Litestar cannot infer it)."""
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


@post(
    "/predict",
    status_code=HTTP_200_OK,
    summary="Classify one image (multipart field 'file')",
    responses=ERRORS,
    operation_class=multipart_operation(BINARY),
)
async def predict(
    request: Request, service: PredictionService, top_k: TopK = None, x_client_id: ClientId = None
) -> PredictionResponse:
    context = RequestContext(
        "http", request.headers.get("x-request-id"), top_k, client_id=client_id(x_client_id)
    )
    outcome = await service.predict(await uploaded_file(request), context)
    return PredictionResponse.of(outcome)


def client_id(value: str | None) -> str | None:
    """The browser's X-Client-Id, if it sent one (curl does not): its history lists this prediction."""
    if value is not None and not CLIENT_ID.fullmatch(value):
        raise problems.MissingClientId(
            "X-Client-Id must be a random id of 8 to 64 letters, digits, '-' or '_' that this browser keeps"
        )
    return value


async def uploaded_file(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise images.UnsupportedImage(
            f"send the image as multipart/form-data in a field named 'file' (got {content_type or 'no content type'})"
        )
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        fields = ", ".join(sorted(form.keys())) or "none"
        raise problems.MissingFile(f"no file in the multipart field 'file' (fields sent: {fields})")
    return await upload.read()

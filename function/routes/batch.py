"""POST /predict/batch: several images in one multipart request, a result per file in order.

Each image is its own multipart part named `file` (`curl -F file=@a.jpg -F file=@b.jpg`), or `files`. A file that
cannot be classified gets the problem /predict would have answered for it alone, and the others are classified;
what is wrong with the request as a whole (not multipart, no files, too many, too large, top_k) fails it whole."""

from __future__ import annotations

import msgspec
from litestar import Request, post
from litestar.datastructures import UploadFile
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.status_codes import HTTP_200_OK

from function import images, problems
from function.routes.predict import BINARY, ClientId, TopK, client_id, multipart_operation
from function.service import Outcome, PredictionService, RequestContext
from function.settings import Settings
from function.wire import PredictionResponse, Problem

FIELDS = ("file", "files")


class FileResult(msgspec.Struct):
    """One file's answer: exactly one of `prediction` and `problem` is set."""

    filename: str
    prediction: PredictionResponse | None = None
    problem: Problem | None = None

    @classmethod
    def of(cls, filename: str, outcome: Outcome | Exception) -> FileResult:
        if isinstance(outcome, Outcome):
            return cls(filename, prediction=PredictionResponse.of(outcome))
        status, title = _status_of(outcome)
        return cls(filename, problem=Problem("about:blank", title, status, problems.safe(str(outcome))))


class BatchResponse(msgspec.Struct):
    results: list[FileResult]  # in the order the files were sent


def handlers(settings: Settings) -> list:
    errors = {
        400: problems.spec("top_k out of range, or a query parameter of the wrong type"),
        413: problems.spec(
            f"More than MAX_BATCH_FILES ({settings.max_batch_files}) files, or a request larger than "
            f"MAX_BATCH_BYTES ({settings.max_batch_bytes:,} bytes)"
        ),
        415: problems.spec("Not multipart/form-data"),
        422: problems.spec(
            "No file in the fields 'file' or 'files', a value there that is not a file, or both field names used"
        ),
        503: problems.spec("The model is not loaded (yet): Retry-After says when to try again"),
    }

    @post(
        "/predict/batch",
        status_code=HTTP_200_OK,
        summary="Classify several images (repeated multipart field 'file'), a result per file in order",
        description=(
            f"Up to MAX_BATCH_FILES ({settings.max_batch_files}) images, each in a multipart part named 'file' "
            "(or each in one named 'files'), each at most MAX_UPLOAD_BYTES. Answered 200 with one result per file, "
            "in the order sent: the /predict fields under 'prediction', or, for a file that cannot be classified, "
            "under 'problem' the RFC 9457 problem /predict would have answered for it alone (413, 415 or 422). "
            "Each classified file is logged with source 'batch'."
        ),
        responses=errors,
        request_max_body_size=settings.max_batch_bytes,
        operation_class=multipart_operation(
            Schema(type=OpenAPIType.ARRAY, items=BINARY, min_items=1, max_items=settings.max_batch_files)
        ),
    )
    async def predict_batch(
        request: Request, service: PredictionService, top_k: TopK = None, x_client_id: ClientId = None
    ) -> BatchResponse:
        uploads = await _uploaded_files(request, settings)
        context = RequestContext(
            "batch", request.headers.get("x-request-id"), top_k, client_id=client_id(x_client_id)
        )
        outcomes = await service.predict_batch([data for _, data in uploads], context)
        return BatchResponse(
            [FileResult.of(name, outcome) for (name, _), outcome in zip(uploads, outcomes, strict=True)]
        )

    return [predict_batch]


async def _uploaded_files(request: Request, settings: Settings) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every file, in the order sent."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise images.UnsupportedImage(
            "send the images as multipart/form-data, each in a field named 'file' "
            f"(got {content_type or 'no content type'})"
        )
    try:
        form = await request.form()
    except RequestEntityTooLarge:  # the app's own message names MAX_UPLOAD_BYTES, the single-file limit
        detail = (
            f"the request is larger than the limit of {settings.max_batch_bytes:,} bytes (MAX_BATCH_BYTES)"
        )
        raise problems.problem(413, "Batch too large", detail) from None
    used = [field for field in FIELDS if field in form]
    if len(used) > 1:  # the parser keeps each name's order, not the order across names
        raise problems.problem(
            422, "Ambiguous file order", "send every image in 'file', or every one in 'files'"
        )
    if not used:
        fields = ", ".join(sorted(form.keys())) or "none"
        raise problems.MissingFile(f"no file in the multipart field 'file' (fields sent: {fields})")
    uploads = form.getall(used[0])
    if len(uploads) > settings.max_batch_files:
        raise problems.problem(
            413,
            "Too many files",
            f"the request has {len(uploads)} files, more than the limit of {settings.max_batch_files} "
            "(MAX_BATCH_FILES): send them in several batches",
        )
    if not all(isinstance(upload, UploadFile) for upload in uploads):
        raise problems.MissingFile(f"a value in the multipart field '{used[0]}' is not a file (no filename)")
    return [(upload.filename, await upload.read()) for upload in uploads]


def _status_of(error: Exception) -> tuple[int, str]:
    """The status and title /predict answers for this error: the nearest class in the one table."""
    for kind in type(error).__mro__:
        if kind in problems.DOMAIN_ERRORS:
            return problems.DOMAIN_ERRORS[kind]
    raise error  # not the client's fault: the whole request becomes a 500

"""POST /predict/batch: several images in one multipart request, a result per file in order.

Each image is its own multipart part named `file` (`curl -F file=@a.jpg -F file=@b.jpg`), or `files`. A file that
cannot be classified gets the problem /predict would have answered for it alone, and the others are classified;
what is wrong with the request as a whole (not multipart, no files, too many, too large, top_k) fails it whole."""

from __future__ import annotations

from litestar import Request
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.spec import OpenAPIType, Schema

from function.http import openapi, problems
from function.http.multipart import read_form
from function.http.routes.params import ClientId, TopK, client_id, request_id
from function.inference.outcome import RequestContext
from function.inference.service import PredictionService
from function.protocols.wire import BatchResponse, FileResult, PredictionResponse, Problem
from function.settings import Settings

FIELDS = ("file", "files")


def docs(settings: Settings) -> dict:
    return dict(
        summary="Classify several images (repeated multipart field 'file'), a result per file in order",
        description=(
            f"Up to MAX_BATCH_FILES ({settings.max_batch_files}) images, each in a multipart part named 'file' "
            "(or each in one named 'files'), each at most MAX_UPLOAD_BYTES. Answered 200 with one result per file, "
            "in the order sent: the /predict fields under 'prediction', or, for a file that cannot be classified, "
            "under 'problem' the RFC 9457 problem /predict would have answered for it alone (413, 415 or 422). "
            "Each classified file is logged with source 'batch'."
        ),
        responses={
            400: openapi.problem("top_k out of range, or a query parameter of the wrong type"),
            413: openapi.problem(
                f"More than MAX_BATCH_FILES ({settings.max_batch_files}) files, or a request larger than "
                f"MAX_BATCH_BYTES ({settings.max_batch_bytes:,} bytes)"
            ),
            415: openapi.problem("Not multipart/form-data"),
            422: openapi.problem(
                "No file in the fields 'file' or 'files', a value there that is not a file, or both field names used"
            ),
            503: openapi.NOT_LOADED,
        },
        operation_class=openapi.multipart_operation(
            Schema(
                type=OpenAPIType.ARRAY, items=openapi.BINARY, min_items=1, max_items=settings.max_batch_files
            )
        ),
    )


async def predict_batch(
    request: Request,
    service: PredictionService,
    settings: Settings,
    top_k: TopK = None,
    x_client_id: ClientId = None,
) -> BatchResponse:
    uploads = await _uploaded_files(request, settings)
    context = RequestContext("batch", request_id(request), top_k, client_id=client_id(x_client_id))
    outcomes = await service.predict_batch([data for _, data in uploads], context)
    results = []
    for (name, _), outcome in zip(uploads, outcomes, strict=True):
        if isinstance(outcome, Exception):
            status, title = problems.status_of(outcome)
            results.append(
                FileResult(name, problem=Problem("about:blank", title, status, problems.safe(str(outcome))))
            )
        else:
            results.append(FileResult(name, prediction=PredictionResponse.of(outcome)))
    return BatchResponse(results)


async def _uploaded_files(request: Request, settings: Settings) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every file, in the order sent."""
    try:
        form = await read_form(
            request, "send the images as multipart/form-data, each in a field named 'file'"
        )
    except RequestEntityTooLarge:  # the app's own message names MAX_UPLOAD_BYTES, the single-file limit
        detail = (
            f"the request is larger than the limit of {settings.max_batch_bytes:,} bytes (MAX_BATCH_BYTES)"
        )
        raise problems.problem(413, "Batch too large", detail) from None
    used = [field for field in FIELDS if form.named(field)]
    if len(used) > 1:  # one name, so that "in the order sent" cannot mean two things
        raise problems.problem(
            422, "Ambiguous file order", "send every image in 'file', or every one in 'files'"
        )
    if not used:
        raise problems.MissingFile(f"no file in the multipart field 'file' (fields sent: {form.names()})")
    uploads = form.named(used[0])
    if len(uploads) > settings.max_batch_files:
        raise problems.problem(
            413,
            "Too many files",
            f"the request has {len(uploads)} files, more than the limit of {settings.max_batch_files} "
            "(MAX_BATCH_FILES): send them in several batches",
        )
    if any(upload.filename is None for upload in uploads):
        raise problems.MissingFile(f"a value in the multipart field '{used[0]}' is not a file (no filename)")
    return [(upload.filename, upload.data) for upload in uploads]

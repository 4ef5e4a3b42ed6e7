"""POST /predict: one image in the multipart field `file` (the team's `curl -F file=@fish.jpg .../predict`)."""

from __future__ import annotations

from litestar import Request

from function.http import openapi
from function.http.routes.params import ClientId, TopK, client_id, request_id, uploaded_file
from function.inference.outcome import RequestContext
from function.inference.service import PredictionService
from function.protocols.wire import PredictionResponse

DOCS = dict(
    summary="Classify one image (multipart field 'file')",
    responses={
        400: openapi.problem("top_k out of range, or a query parameter of the wrong type"),
        413: openapi.problem(
            "File larger than MAX_UPLOAD_BYTES, or image with more pixels than MAX_IMAGE_PIXELS"
        ),
        415: openapi.problem("Empty upload, not an image, or not multipart/form-data"),
        422: openapi.problem("Truncated or corrupt image, or no multipart field named 'file'"),
        503: openapi.problem("The model is not loaded (yet)"),
    },
    operation_class=openapi.multipart_operation(openapi.BINARY),
)


async def predict(
    request: Request, service: PredictionService, top_k: TopK = None, x_client_id: ClientId = None
) -> PredictionResponse:
    context = RequestContext("http", request_id(request), top_k, client_id=client_id(x_client_id))
    outcome = await service.predict(await uploaded_file(request), context)
    return PredictionResponse.of(outcome)

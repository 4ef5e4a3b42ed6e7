"""POST /predict: one image in the multipart field `file` (the team's `curl -F file=@fish.jpg .../predict`)."""

from __future__ import annotations

from litestar import Request

from function.http.routes.params import ClientId, TopK, client_id, request_id, uploaded_file
from function.inference.outcome import RequestContext
from function.inference.service import PredictionService
from function.protocols.wire import PredictionResponse


async def predict(
    request: Request, service: PredictionService, top_k: TopK = None, x_client_id: ClientId = None
) -> PredictionResponse:
    context = RequestContext("http", request_id(request), top_k, client_id=client_id(x_client_id))
    outcome = await service.predict(await uploaded_file(request), context)
    return PredictionResponse.of(outcome)

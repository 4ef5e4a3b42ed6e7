"""GET /health (readiness: the model, and whether shutdown has begun) and GET /model_info."""

from __future__ import annotations

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from function import problems
from function.lifecycle import Shutdown
from function.model_slot import ModelSlot
from function.settings import Settings
from function.wire import Health, ModelInfo


@get(
    "/health",
    summary="Readiness: 200 once the model is loaded; 503 with a reason before, and from SIGTERM on",
    responses={
        503: ResponseSpec(data_container=Health, description="Model not loaded (yet), or shutting down")
    },
)
async def health(slot: ModelSlot, shutdown: Shutdown) -> Response[Health]:
    loaded = slot.classifier is not None
    if shutdown.began:  # out of the load balancer first; requests that still come are served
        return Response(Health("draining", loaded, "shutting down"), status_code=503)
    if not loaded:
        return Response(
            Health("unavailable", False, slot.error or "the model is still loading"), status_code=503
        )
    return Response(Health("healthy", True))


@get(
    "/model_info",
    summary="The model being served and the Knative revision serving it",
    responses={503: problems.spec("The model is not loaded (yet)")},
)
async def model_info(slot: ModelSlot, settings: Settings) -> ModelInfo:
    classifier, source = slot.get()
    return ModelInfo.of(source, classifier.card, settings)

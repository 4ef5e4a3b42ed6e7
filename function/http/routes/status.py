"""GET /health (readiness: the model, and whether shutdown has begun), GET /model_info and GET /metrics."""

from __future__ import annotations

from litestar import Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.prometheus import PrometheusController

from function.http import openapi
from function.lifecycle import Shutdown
from function.model.slot import ModelSlot
from function.protocols.wire import Health, ModelInfo
from function.settings import Settings

HEALTH_DOCS = dict(
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


MODEL_INFO_DOCS = dict(
    summary="The model being served and the Knative revision serving it",
    responses={503: openapi.problem("The model is not loaded (yet)")},
)


async def model_info(slot: ModelSlot, settings: Settings, shadow_slot: ModelSlot | None) -> ModelInfo:
    classifier, source = slot.get()
    return ModelInfo.of(source, classifier.card, settings, shadow_slot)


class Metrics(PrometheusController):
    """For Prometheus, in its text format: not an API operation, so not in the OpenAPI document (Litestar's
    controller would be documented as JSON)."""

    include_in_schema = False

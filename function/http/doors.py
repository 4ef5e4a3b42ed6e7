"""Every door of the function, in one table: method, path, handler, and what differs from the app's defaults.

What a door does is its module's under `routes/`; what it says in the OpenAPI document is `openapi`'s. The first
group, the doors that decode and run the model, is what admission control counts (`admission.counted`)."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Router
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler

from function.http import openapi
from function.http.routes import batch, events, history, oip, predict, status, web
from function.settings import Settings

GET, POST, OPTIONS = HttpMethod.GET, HttpMethod.POST, HttpMethod.OPTIONS
OIP_MODEL = ["/models/{name:str}", "/models/{name:str}/versions/{version:str}"]


def door(method: HttpMethod, path: str | list[str], handler: Callable, docs: dict | None = None, **options):
    return HTTPRouteHandler(path, http_method=method, **(docs or {}), **options)(handler)


def doors(settings: Settings) -> list:
    return [
        # inference: counted by admission control (function.http.admission)
        door(POST, "/predict", predict.predict, openapi.PREDICT, status_code=200),
        door(POST, "/predict/batch", batch.predict_batch, openapi.batch(settings), status_code=200,
             request_max_body_size=settings.max_batch_bytes),
        door(OPTIONS, "/", events.options, include_in_schema=False),  # before POST /, or Litestar makes its own
        door(POST, "/", events.receive_event, openapi.EVENT, status_code=200,
             request_max_body_size=events.body_limit(settings)),
        Router("/v2", route_handlers=oip_doors(), exception_handlers=oip.exception_handlers(settings),
               request_max_body_size=settings.max_batch_bytes, tags=openapi.OIP_TAGS),
        # the UI's API over the prediction log
        door(GET, "/predictions", history.predictions, openapi.PREDICTIONS),
        door(POST, "/predictions/{prediction_id:uuid}/feedback", history.feedback, openapi.FEEDBACK,
             status_code=204),
        door(GET, "/stats", history.stats, openapi.STATS),
        # the page, unless WEB_UI is off
        *(web_doors() if settings.web_ui else []),
        # status
        door(GET, "/health", status.health, openapi.HEALTH),
        door(GET, "/model_info", status.model_info, openapi.MODEL_INFO),
        status.Metrics,
    ]  # fmt: skip


def oip_doors() -> list:
    """The Open Inference Protocol's REST API, under /v2."""
    return [
        door(GET, "/", oip.server_metadata, openapi.OIP_SERVER),
        door(GET, "/health/live", oip.live, openapi.OIP_LIVE),
        door(GET, "/health/ready", oip.ready, openapi.OIP_READY),
        door(GET, OIP_MODEL, oip.model_metadata, openapi.OIP_MODEL),
        door(GET, [path + "/ready" for path in OIP_MODEL], oip.model_ready, openapi.OIP_MODEL_READY),
        door(POST, [path + "/infer" for path in OIP_MODEL], oip.infer, openapi.OIP_INFER, status_code=200),
    ]


def web_doors() -> list:
    """The page and its files (a `web_files` dependency: function.http.web_files.WebFiles)."""
    return [
        door(GET, "/", web.page, openapi.PAGE, sync_to_thread=True),
        # Files for the page, not an API: left out of the OpenAPI document (one operation cannot say CSS or script)
        door(
            GET, "/static/{version:str}/{name:path}", web.static, sync_to_thread=True, include_in_schema=False
        ),
    ]

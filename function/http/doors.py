"""Every door of the function, in one table: method, path, handler, and what differs from the app's defaults.

What a door does, and what it says in the OpenAPI document (its `DOCS`, kept beside the handler and out of its
logic), is its module's under `routes/`. The first
group, the doors that decode and run the model (`inference_door`), is what admission control counts. The API
documentation under /schema is Litestar's OpenAPI router, its page and files from `routes/docs.py`."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Router
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler

from function.http.routes import batch, events, history, oip, predict, status, web
from function.http.routing import INFERENCE
from function.settings import Settings

GET, POST, OPTIONS = HttpMethod.GET, HttpMethod.POST, HttpMethod.OPTIONS
OIP_MODEL = ["/models/{name:str}", "/models/{name:str}/versions/{version:str}"]


def door(method: HttpMethod, path: str | list[str], handler: Callable, docs: dict | None = None, **options):
    return HTTPRouteHandler(path, http_method=method, **(docs or {}), **options)(handler)


def inference_door(method: HttpMethod, path: str | list[str], handler: Callable, docs: dict, **options):
    """A door that decodes and runs the model: admission control counts its requests."""
    return door(method, path, handler, docs, opt={INFERENCE: True}, **options)


def doors(settings: Settings) -> list:
    return [
        # inference: counted by admission control (function.http.admission)
        inference_door(POST, "/predict", predict.predict, predict.DOCS, status_code=200),
        inference_door(POST, "/predict/batch", batch.predict_batch, batch.docs(settings), status_code=200,
             request_max_body_size=settings.max_batch_bytes),
        door(OPTIONS, "/", events.options, include_in_schema=False),  # before POST /, or Litestar makes its own
        inference_door(POST, "/", events.receive_event, events.DOCS, status_code=200,
             request_max_body_size=events.body_limit(settings)),
        Router("/v2", route_handlers=oip_doors(), exception_handlers=oip.exception_handlers(settings),
               request_max_body_size=settings.max_batch_bytes, tags=oip.TAGS),
        # the UI's API over the prediction log
        door(GET, "/predictions", history.predictions, history.PREDICTIONS_DOCS),
        door(POST, "/predictions/{prediction_id:uuid}/feedback", history.feedback, history.FEEDBACK_DOCS,
             status_code=204),
        door(GET, "/stats", history.stats, history.STATS_DOCS),
        # the page, unless WEB_UI is off
        *(web_doors() if settings.web_ui else []),
        # status
        door(GET, "/health", status.health, status.HEALTH_DOCS),
        door(GET, "/model_info", status.model_info, status.MODEL_INFO_DOCS),
        status.Metrics,
    ]  # fmt: skip


def oip_doors() -> list:
    """The Open Inference Protocol's REST API, under /v2."""
    return [
        door(GET, "/", oip.server_metadata, oip.SERVER_DOCS),
        door(GET, "/health/live", oip.live, oip.LIVE_DOCS),
        door(GET, "/health/ready", oip.ready, oip.READY_DOCS),
        door(GET, OIP_MODEL, oip.model_metadata, oip.MODEL_DOCS),
        door(GET, [path + "/ready" for path in OIP_MODEL], oip.model_ready, oip.MODEL_READY_DOCS),
        # The body's limit depends on the model (oip.body_limit): the handler holds it, not Litestar.
        inference_door(POST, [path + "/infer" for path in OIP_MODEL], oip.infer, oip.INFER_DOCS, status_code=200,
                       request_max_body_size=None),
    ]  # fmt: skip


def web_doors() -> list:
    """The page and its files (a `web_files` dependency: function.http.web_files.WebFiles)."""
    return [
        door(GET, "/", web.page, web.PAGE_DOCS, sync_to_thread=True),
        # Files for the page, not an API: left out of the OpenAPI document (one operation cannot say CSS or script)
        door(
            GET, "/static/{version:str}/{name:path}", web.static, sync_to_thread=True, include_in_schema=False
        ),
    ]

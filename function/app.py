"""`create_app` only assembles: the model slot, the prediction log, the prediction service, the doors
(`function.routes`: /predict, /predict/batch, CloudEvents at /, the Open Inference Protocol under /v2, status,
and the web UI unless WEB_UI is off), problem details (`function.problems`), Litestar's Prometheus
middleware, and in front of it all admission control and security headers (`function.admission`)."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from function import problems
from function.admission import Admission
from function.image_urls import ImageUrls
from function.lifecycle import Shutdown
from function.model_slot import ModelSlot
from function.prediction_log import PredictionLog, open_log
from function.routes import batch, events, history, oip, predict, status, web
from function.service import PredictionService
from function.settings import BODY_SLACK_BYTES, Settings


class Metrics(PrometheusController):
    """For Prometheus, in its text format: not an API operation, so not in the OpenAPI document (Litestar's
    controller would be documented as JSON)."""

    include_in_schema = False


def create_app(
    settings: Settings,
    prediction_log: PredictionLog | None = None,
    slot: ModelSlot | None = None,
    shutdown: Shutdown | None = None,
) -> Litestar:
    """`slot`: a model already loading (the server starts it before importing this module); by default the
    model starts loading when the app starts. `shutdown`: the server's, which marks SIGTERM."""
    prediction_log = open_log(settings.database_url) if prediction_log is None else prediction_log
    shutdown = shutdown or Shutdown(settings.shutdown_grace_s, settings.shutdown_drain_s)
    preloading = slot is not None
    slot = slot or ModelSlot()
    service = PredictionService(settings, slot, prediction_log)
    image_urls = ImageUrls(
        settings.image_url_allowed_prefixes, settings.image_url_timeout_s, settings.max_upload_bytes
    )

    def start() -> None:
        service.start()
        if not preloading:
            slot.start(settings)

    async def flush_log() -> None:
        await prediction_log.stop(shutdown.log_flush_timeout_s())

    def provide(value) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    prometheus = PrometheusConfig(app_name="fish-function", prefix="http", group_path=True)
    app = Litestar(
        route_handlers=[
            predict.predict,
            *batch.handlers(settings),
            *events.handlers(settings),
            *oip.handlers(settings),
            *history.HANDLERS,
            *(web.handlers(settings) if settings.web_ui else []),
            status.health,
            status.model_info,
            Metrics,
        ],
        dependencies={
            "service": provide(service),
            "slot": provide(slot),
            "settings": provide(settings),
            "shutdown": provide(shutdown),
            "image_urls": provide(image_urls),
            "prediction_log": provide(prediction_log),
        },
        middleware=[prometheus.middleware],
        plugins=[problems.plugin(settings)],
        on_startup=[start, prediction_log.start],
        on_shutdown=[flush_log, service.stop, image_urls.close],
        request_max_body_size=settings.max_upload_bytes + BODY_SLACK_BYTES,
    )
    app.state.model_slot = slot
    # Outermost, inside Litestar's own entry point: a refused request costs no routing and no body read.
    app.asgi_handler = Admission(app.asgi_handler, settings.max_concurrent_requests,
                                 settings.body_idle_timeout_s, settings.slow_upload_s,
                                 settings.shed_delay_s)  # fmt: skip
    return app

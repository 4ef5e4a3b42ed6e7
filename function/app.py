"""`create_app` only assembles: the model slot, the prediction log, the prediction service, the doors
(`function.http.doors`, the one table of routes), problem details (`function.http.problems`), and in front of it
all the pure ASGI layers, each with one job: security headers, HEAD as GET, finding the route, request metrics,
admission control, slow bodies (`function.http`)."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.events.emitter import BaseEventEmitterBackend

from function.http import problems
from function.http.admission import Admission
from function.http.doors import doors
from function.http.head_as_get import HeadAsGet
from function.http.request_metrics import RequestMetrics
from function.http.routes import docs
from function.http.routing import FindRoute, runs_the_model
from function.http.security_headers import SecurityHeaders
from function.http.slow_bodies import SlowBodies
from function.http.web_files import WebFiles
from function.inference import images
from function.inference.image_urls import ImageUrls
from function.inference.service import PredictionService
from function.inference.shadow import Shadow
from function.lifecycle import Shutdown
from function.model.slot import ModelSlot
from function.prediction_log import NullLog, PostgresLog, PredictionLog
from function.settings import BODY_SLACK_BYTES, Settings


class NoEvents(BaseEventEmitterBackend):
    """The function has no event listeners. Litestar's default emitter starts an anyio task group at startup,
    and importing anyio's asyncio backend for it put ~12 ms between the app being built and the port opening;
    a request to /predict needs none of it."""

    async def __aenter__(self) -> NoEvents:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def emit(self, event_id: str, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"the function has no listener for {event_id!r}")


def create_app(
    settings: Settings,
    prediction_log: PredictionLog | None = None,
    slot: ModelSlot | None = None,
    shutdown: Shutdown | None = None,
    image_urls: ImageUrls | None = None,
) -> Litestar:
    """`slot`: a model already loading (the server starts it before importing this module); by default the
    model starts loading when the app starts. The shadow model (SHADOW_MODEL_URI) starts loading once the served
    one is loaded, so it never slows a cold start. `shutdown`: the server's, which marks SIGTERM. `image_urls`:
    the server's, checked with the other settings."""
    if prediction_log is None:
        prediction_log = PostgresLog(settings.database_url) if settings.database_url else NullLog()
    shutdown = shutdown or Shutdown(settings.shutdown_grace_s, settings.shutdown_drain_s)
    preloading = slot is not None
    slot = slot or ModelSlot(warm_up=images.warm_up)
    shadow_slot = ModelSlot(role="shadow") if settings.shadow_model_uri else None
    shadow = Shadow(settings, shadow_slot, prediction_log) if shadow_slot else None
    service = PredictionService(settings, slot, prediction_log, shadow)
    image_urls = image_urls or ImageUrls.of(settings)
    web_files = WebFiles(settings.web_dir)

    def start() -> None:
        service.start()
        if not preloading:
            slot.start(settings)
        if shadow is not None:
            shadow.start()
            shadow_slot.start(settings, after=slot.loaded)

    async def stop_shadow() -> None:
        if shadow is not None:
            await shadow.stop()  # its last rows reach the log's queue before the log is flushed

    async def flush_log() -> None:
        await prediction_log.stop(shutdown.log_flush_timeout_s())

    def provide(value) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    app = Litestar(
        route_handlers=doors(settings),
        dependencies={
            "service": provide(service),
            "slot": provide(slot),
            "shadow_slot": provide(shadow_slot),
            "settings": provide(settings),
            "shutdown": provide(shutdown),
            "image_urls": provide(image_urls),
            "prediction_log": provide(prediction_log),
            "web_files": provide(web_files),
        },
        plugins=[problems.plugin(settings)],
        event_emitter_backend=NoEvents,
        openapi_config=docs.openapi_config(web_files),  # Swagger UI from the function's own files
        on_startup=[start, prediction_log.start],
        on_shutdown=[stop_shadow, flush_log, service.stop, image_urls.close],
        request_max_body_size=settings.max_upload_bytes + BODY_SLACK_BYTES,
    )
    # Outermost, inside Litestar's own entry point: a refused request costs one route lookup and no body read.
    handler = SlowBodies(app.asgi_handler, runs_the_model, settings.body_idle_timeout_s, settings.slow_upload_s,
                         slow_limit=max(1, settings.max_concurrent_requests // 2))  # fmt: skip
    handler = Admission(handler, runs_the_model, settings.max_concurrent_requests, settings.shed_delay_s)
    app.asgi_handler = SecurityHeaders(HeadAsGet(FindRoute(RequestMetrics(handler), app)))
    return app

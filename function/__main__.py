"""fish-function: serve the model on $PORT (Knative's contract).

Start-up order is part of the cold start: the model starts loading first, and the web stack is imported
while onnxruntime builds its sessions."""

from __future__ import annotations

from function import lazy_imports

lazy_imports.install()  # before the web stack is imported: see the module for what is deferred and why

import logging
import os
import sys

from function.inference import images
from function.inference.image_urls import ImageUrls
from function.lifecycle import BudgetTooSmall, Shutdown
from function.model.slot import ModelSlot
from function.settings import BadSetting, Settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # a setting that cannot be used: one line that names it, not a traceback
        settings = Settings.from_env(os.environ)
        shutdown = Shutdown(settings.shutdown_grace_s, settings.shutdown_drain_s)
        image_urls = ImageUrls.of(settings)
    except (BadSetting, BudgetTooSmall) as exc:
        sys.exit(f"fish-function: {exc}")
    slot = ModelSlot(warm_up=images.warm_up).start(settings)

    from functools import partial

    import uvicorn

    from function.app import create_app
    from function.http.server import DrainingServer, GuardedHttpTools

    config = uvicorn.Config(
        create_app(settings, slot=slot, shutdown=shutdown, image_urls=image_urls),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=shutdown.request_timeout_s,
        http=partial(GuardedHttpTools, header_timeout_s=settings.header_timeout_s),
        server_header=False,  # "server: uvicorn" tells a scanner which CVEs to try
        # No limit_concurrency: it counts idle and half-sent connections too, so a few hundred slowloris
        # connections would get every request a text/plain 503. Admission control (function.http.admission) counts
        # only requests that do inference, and the header deadline above bounds what a connection can hold.
    )
    server = DrainingServer(config, shutdown)
    server.run()
    if not server.started:
        sys.exit(3)  # as uvicorn.run does: the port could not be bound, say


if __name__ == "__main__":
    main()

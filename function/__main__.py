"""fish-function: serve the model on $PORT (Knative's contract).

Start-up order is part of the cold start: the model starts loading first, and the web stack is imported
while onnxruntime builds its sessions."""

from __future__ import annotations

import logging
import os

from function.model_slot import ModelSlot
from function.settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(os.environ)
    slot = ModelSlot().start(settings)

    import uvicorn

    from function.app import create_app

    uvicorn.run(
        create_app(settings, slot=slot),
        host=os.environ.get("HOST", "0.0.0.0"),
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=25,
    )


if __name__ == "__main__":
    main()

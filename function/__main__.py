"""fish-function: serve the model on $PORT (Knative's contract)."""

from __future__ import annotations

import logging
import os

import uvicorn

from function.app import create_app
from function.settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(os.environ)
    uvicorn.run(
        create_app(settings),
        host=os.environ.get("HOST", "0.0.0.0"),
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=25,
    )


if __name__ == "__main__":
    main()

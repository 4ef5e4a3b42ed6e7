"""The Open Inference Protocol v2 (REST) under /v2: a thin adapter over the prediction service."""

from __future__ import annotations

from function.settings import Settings


def handlers(settings: Settings) -> list:
    return []

"""POST /predict/batch: several images in one multipart request, a result per file in order."""

from __future__ import annotations

from function.settings import Settings


def handlers(settings: Settings) -> list:
    return []

"""CloudEvents at POST /: Knative Eventing's image events in, prediction events out."""

from __future__ import annotations

from function.settings import Settings


def handlers(settings: Settings) -> list:
    return []

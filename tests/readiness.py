"""Waiting for a test app to load its model (it answers /health 503 until then)."""

from __future__ import annotations

import time


def wait_healthy(client, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (response := client.get("/health")).status_code != 200:
        assert time.monotonic() < deadline, f"not ready: {response.json()}"
        time.sleep(0.02)

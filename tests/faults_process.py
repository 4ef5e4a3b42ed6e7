"""`python -m function` for fault tests: started without waiting for readiness (a fault may keep it from ever being
ready), its log kept in a file (a pipe nobody reads would stall a process that logs a lot), and polled for states."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from convert.demo.mlflow_server import free_port

# uvicorn re-raises SIGTERM once its graceful shutdown is done, so a clean stop can also read as -15.
CLEAN_EXIT = (0, -signal.SIGTERM)


class Function:
    def __init__(self, folder: Path, **env: str | None):
        """Starts the process and returns once it answers HTTP. `env` adds to the test's environment (None: unset);
        DATABASE_URL is unset unless given."""
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"function-{time.monotonic_ns()}.log"
        for _ in range(3):  # another process may bind the port between free_port() and the server's bind
            self.port = free_port()
            environment = {**os.environ, "DATABASE_URL": None, "SHUTDOWN_DRAIN_SECONDS": "0", **env,
                           "PORT": str(self.port)}  # fmt: skip
            environment = {name: value for name, value in environment.items() if value is not None}
            with self.log_path.open("a") as log:
                self.process = subprocess.Popen([sys.executable, "-m", "function"], env=environment,
                                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            if self._answers_http():
                self.url = f"http://127.0.0.1:{self.port}"
                return
        raise AssertionError("no free port could be bound in three attempts")

    def _answers_http(self, timeout_s: float = 120) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                assert "address already in use" in self.log(), self.log()
                return False
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=30)
                return True
            except httpx.TransportError:
                time.sleep(0.02)
        raise AssertionError(f"the function never answered HTTP:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def health(self) -> tuple[int, dict]:
        response = httpx.get(f"{self.url}/health", timeout=30)
        return response.status_code, response.json()

    def wait_health(self, done, what: str, timeout_s: float = 120) -> dict:
        """Polls /health until `done(status, body)`; the process must stay up meanwhile."""
        deadline = time.monotonic() + timeout_s
        while not done(*(answer := self.health())):
            assert self.process.poll() is None, (
                f"the function exited ({self.process.returncode}):\n{self.log()}"
            )
            assert time.monotonic() < deadline, (
                f"timed out waiting for {what}; /health: {answer}\n{self.log()}"
            )
            time.sleep(0.05)
        return answer[1]

    def wait_serving(self, timeout_s: float = 120) -> dict:
        """/model_info once the model serves; fails at once if loading failed (it is not tried again)."""
        body = self.wait_health(lambda status, body: status == 200 or "still loading" not in body["reason"],
                                "the model to load", timeout_s)  # fmt: skip
        assert body["status"] == "healthy", body
        return httpx.get(f"{self.url}/model_info", timeout=30).json()

    def wait_unavailable(self, timeout_s: float = 120) -> str:
        """The reason /health gives once loading has failed (not while it is still loading)."""
        body = self.wait_health(lambda status, body: status == 200 or "still loading" not in body["reason"],
                                "the load to end", timeout_s)  # fmt: skip
        assert body["status"] == "unavailable", body
        return body["reason"]

    def stop(self, timeout_s: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

"""Start and probe a local `mlflow server` (SQLite backend, local artifacts, loopback only).

Used by the demo and by the integration tests, so both run against the same real server setup.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(root: Path, port: int, detach: bool = False) -> subprocess.Popen:
    """Launch the server with its database and artifacts under `root`; returns once /health answers.

    `detach` puts it in its own session so it outlives the command that started it (the demo)."""
    root.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root.resolve() / 'mlflow.db'}",
        "--artifacts-destination", str(root.resolve() / "artifacts"),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    log = (root / "mlflow-server.log").open("ab")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=detach
    )
    wait_healthy(f"http://127.0.0.1:{port}", process, root / "mlflow-server.log")
    return process


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not is_healthy(url):
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"mlflow server did not answer on {url} within {timeout_s:.0f} s; see {log}")
        time.sleep(0.25)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

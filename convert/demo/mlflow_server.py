"""Start and probe a local `mlflow server` (SQLite backend, local artifacts, loopback only).

Used by the demo and by the integration tests, so both run against the same real server setup.
"""

from __future__ import annotations

import contextlib
import os
import signal
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


def start(root: Path, port: int) -> subprocess.Popen:
    """Launch the server with its database and artifacts under `root`; returns once /health answers.

    It runs in a session of its own: it outlives the command that started it (the demo), and `stop` ends
    the whole group (mlflow starts uvicorn and job-runner children that a plain terminate would orphan)."""
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
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    wait_healthy(f"http://127.0.0.1:{port}", process, root / "mlflow-server.log")
    return process


class ServerExited(RuntimeError):
    """The server process ended before it answered /health (its port taken, a bad store, ...)."""


def start_on_free_port(root: Path, attempts: int = 3) -> tuple[subprocess.Popen, int]:
    """`start` on a port found free; returns (process, port). Another process may bind that port before the
    server does (it binds only once its imports are done, seconds later): the server then exits, and another
    port is tried."""
    for _ in range(attempts - 1):
        port = free_port()
        with contextlib.suppress(ServerExited):
            return start(root, port), port
    port = free_port()
    return start(root, port), port


# A first start creates the SQLite schema (tens of migrations): about 15 s on an idle 2-core machine, several
# times that on a loaded one. The wait ends as soon as the process exits, so a long deadline costs nothing then.
START_TIMEOUT_S = 600


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not is_healthy(url):
        if process.poll() is not None:
            raise ServerExited(f"mlflow server exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"mlflow server did not answer on {url} within {timeout_s:.0f} s; see {log}")
        time.sleep(0.25)


def stop(process: subprocess.Popen) -> None:
    """Stop a server this process started (and reap it), children included."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    # About 1-3 s; a loaded machine may take much longer, and a server that still has not exited is killed
    # below rather than failing the caller (a test session's teardown).
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # job-runner children that outlived the server, or the server
    process.wait()


def stop_group(pid: int, timeout_s: float = 15) -> bool:
    """Stop a server another process started: SIGTERM its group, SIGKILL what is left after `timeout_s`.
    False if it was gone already."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    return True

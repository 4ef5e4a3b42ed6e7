"""The Knative runtime contract, on the real process (`python -m function`): $PORT, readiness, and SIGTERM under
load (in-flight requests finish, queued log rows are flushed, the process exits)."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import psycopg
import pytest
from PIL import Image

from convert.mlflow_server import free_port
from tests import tiny_onnx

# uvicorn re-raises SIGTERM once its graceful shutdown is done, so a clean stop can also read as -15.
CLEAN_EXIT = (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


def start(model_path, port: int, **env) -> subprocess.Popen:
    environment = {**os.environ, "PORT": str(port), "MODEL_URI": str(model_path), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "function"], env=environment, stderr=subprocess.PIPE, text=True
    )


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "processtestboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    return (
        head.encode() + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def wait_ready(port: int, process: subprocess.Popen, timeout_s: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        assert process.poll() is None, process.stderr.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise AssertionError("function never became ready")


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def test_listens_on_port_from_the_environment(model_path):
    port = free_port()
    process = start(model_path, port)
    try:
        wait_ready(port, process)
        info = httpx.get(f"http://127.0.0.1:{port}/model_info").json()
        assert info["classes"] == tiny_onnx.CLASSES
    finally:
        process.terminate()
        assert process.wait(timeout=30) in CLEAN_EXIT


def test_sigterm_under_load_finishes_in_flight_requests_and_flushes_the_log(model_path, postgres):
    port = free_port()
    process = start(model_path, port, DATABASE_URL=postgres.url)
    wait_ready(port, process)
    answered: list[str] = []
    failed: list[str] = []
    stop = threading.Event()
    image = png_bytes()

    def client():
        while not stop.is_set():
            try:  # a fresh connection a request: a refused connect after SIGTERM is "not accepted", not a failure
                with httpx.Client(headers={"Connection": "close"}, timeout=30) as http:
                    response = http.post(f"http://127.0.0.1:{port}/predict", files={"file": ("a.png", image)})
            except httpx.ConnectError:
                return
            except httpx.TransportError as exc:
                failed.append(repr(exc))
                return
            if response.status_code == 200:
                answered.append(response.json()["prediction_id"])
            else:
                failed.append(f"{response.status_code} {response.text}")

    sigterm_sent = threading.Event()
    slow_status: list[int] = []

    def slow_client():
        """A request still arriving when shutdown starts: headers and half the body before SIGTERM, the rest
        0.5 s after. Graceful shutdown must wait for it and answer it."""
        body, content_type = multipart(image)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            sigterm_sent.wait(30)
            time.sleep(0.5)
            sock.sendall(body[len(body) // 2 :])
            response = http.client.HTTPResponse(sock)
            response.begin()
            slow_status.append(response.status)
            if response.status == 200:
                answered.append(json.loads(response.read())["prediction_id"])  # its row must be flushed too

    threads = [threading.Thread(target=client) for _ in range(6)] + [threading.Thread(target=slow_client)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    # The fast clients send no new request from here: those already sent are in flight and must be answered.
    # (Still sending would also test connections opened as the listener closes; any server resets those, and
    # Knative never sends them: its preStop hook drains the queue-proxy before the container gets SIGTERM.)
    stop.set()
    process.send_signal(signal.SIGTERM)
    sigterm_sent.set()
    code = process.wait(timeout=40)
    for thread in threads:
        thread.join(timeout=30)

    assert code in CLEAN_EXIT and not failed, failed
    assert slow_status == [200]
    assert len(answered) > 20
    with psycopg.connect(postgres.url) as conn:
        written = conn.execute(
            "SELECT count(*) FROM predictions WHERE id = ANY(%s::uuid[])", (answered,)
        ).fetchone()
    assert written[0] == len(answered)

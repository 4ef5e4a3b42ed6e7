"""The runtime contract, on the real process (`python -m function`): $PORT, readiness, and shutdown.

What shutdown guarantees, and so what these tests assert (nothing here depends on how fast the machine is):
- from SIGTERM on, /health answers 503, and for SHUTDOWN_DRAIN_SECONDS requests are still accepted and answered,
  each answer closing its connection;
- when the listener closes (the drain is over, or a second SIGTERM ends it), every request whose bytes the
  server had read is answered, a body still arriving included;
- every answered prediction is in PostgreSQL, and the process exits by itself.
A connection made after the listener closed, or one the kernel had queued but the server never accepted, is
refused or reset: any server's race, which the drain keeps away from traffic that a load balancer still sends."""

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

from convert.demo.mlflow_server import free_port
from tests import tiny_onnx

# uvicorn re-raises SIGTERM once its graceful shutdown is done, so a clean stop can also read as -15.
CLEAN_EXIT = (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


def launch(model_path, **env) -> tuple[subprocess.Popen, int]:
    """`python -m function` on a free port, ready. Another process may bind the port between free_port() and the
    server's bind: then the server exits saying so, and another port is tried."""
    for _ in range(3):
        port = free_port()
        environment = {
            **os.environ,
            "PORT": str(port),
            "MODEL_URI": str(model_path),
            "SHUTDOWN_DRAIN_SECONDS": "0",
        }
        environment.update(env)
        environment = {name: value for name, value in environment.items() if value is not None}  # None: unset
        process = subprocess.Popen(
            [sys.executable, "-m", "function"], env=environment, stderr=subprocess.PIPE, text=True
        )
        if wait_ready(port, process):
            return process, port
    raise AssertionError("no free port could be bound in three attempts")


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "processtestboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    return (
        head.encode() + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def wait_ready(port: int, process: subprocess.Popen, timeout_s: float = 120) -> bool:
    """True once /health answers 200; False if the port was taken (the process exited saying so)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read()
            assert "address already in use" in stderr, stderr
            return False
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise AssertionError("function never became ready")


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def test_listens_on_port_from_the_environment(model_path):
    process, port = launch(model_path)
    try:
        info = httpx.get(f"http://127.0.0.1:{port}/model_info").json()
        assert info["classes"] == tiny_onnx.CLASSES
    finally:
        process.terminate()
        assert process.wait(timeout=30) in CLEAN_EXIT


def predict(http: httpx.Client, port: int, image: bytes) -> httpx.Response:
    return http.post(f"http://127.0.0.1:{port}/predict", files={"file": ("a.png", image)})


class SlowUpload:
    """A request still arriving when the listener closes: half its body is sent at once, the rest only when
    `finish()` is called. It asks `Expect: 100-continue` and sends no body before the server's "100 Continue",
    which the server sends when the app starts reading the body: so the server has read this request (not just
    accepted the connection) before the test goes on, and it must answer it."""

    def __init__(self, port: int, image: bytes):
        body, content_type = multipart(image)
        self._rest = body[len(body) // 2 :]
        self._sock = socket.create_connection(("127.0.0.1", port))
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}"
        self._sock.sendall(f"{head}\r\nExpect: 100-continue\r\n\r\n".encode())
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += self._sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        self._sock.sendall(body[: len(body) // 2])

    def finish(self) -> tuple[int, dict]:
        with self._sock:
            self._sock.sendall(self._rest)
            response = http.client.HTTPResponse(self._sock)
            response.begin()
            return response.status, json.loads(response.read())


def health_status(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code


def wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def assert_logged(postgres, prediction_ids: list[str]) -> None:
    with psycopg.connect(postgres.url) as conn:
        (written,) = conn.execute(
            "SELECT count(*) FROM predictions WHERE id = ANY(%s::uuid[])", (prediction_ids,)
        ).fetchone()
    assert written == len(prediction_ids)


def test_sigterm_drains_then_answers_every_request_it_read_and_flushes_the_log(model_path, postgres):
    """Load through a drain: the drain is as long as the test wants (a second SIGTERM ends it), so which requests
    were sent while the listener was open is known, not a matter of timing."""
    process, port = launch(model_path, DATABASE_URL=postgres.url, SHUTDOWN_DRAIN_SECONDS="600",
                           SHUTDOWN_GRACE_SECONDS="700")  # fmt: skip
    image = png_bytes()
    answered: list[str] = []
    failed: list[str] = []
    after_503: list[httpx.Response] = []
    saw_503 = threading.Event()

    def client(keep_alive: bool):
        """Sends until three of its requests were sent after /health said 503, as a load balancer does while
        it learns of the 503."""
        headers = {} if keep_alive else {"Connection": "close"}
        with httpx.Client(headers=headers, timeout=60) as http:
            sent_after_503 = 0
            while sent_after_503 < 3:
                draining = saw_503.is_set()
                try:
                    response = predict(http, port, image)
                except httpx.TransportError as exc:
                    failed.append(repr(exc))
                    return
                if response.status_code != 200:
                    failed.append(f"{response.status_code} {response.text}")
                    return
                answered.append(response.json()["prediction_id"])
                if draining:
                    sent_after_503 += 1
                    after_503.append(response)

    clients = [threading.Thread(target=client, args=(i == 0,)) for i in range(6)]
    for thread in clients:
        thread.start()
    wait_for(lambda: len(answered) >= 30 or failed, "load before SIGTERM")
    slow = SlowUpload(port, image)

    process.send_signal(signal.SIGTERM)
    wait_for(lambda: health_status(port) == 503, "/health to answer 503 after SIGTERM")
    saw_503.set()
    for thread in clients:
        thread.join(timeout=60)
    assert not failed, failed
    # During the drain every answer closes its connection: keep-alive clients move to another pod.
    assert len(after_503) == 18 and {r.headers.get("connection") for r in after_503} == {"close"}

    process.send_signal(signal.SIGTERM)  # ends the drain: the listener closes, the slow upload is in flight
    wait_for(lambda: refused(port), "the listener to close")
    status, body = slow.finish()
    assert status == 200, body
    answered.append(body["prediction_id"])

    assert process.wait(timeout=60) in CLEAN_EXIT
    assert_logged(postgres, answered)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port)).close()
    except ConnectionRefusedError:
        return True
    return False


def test_under_knative_sigterm_closes_the_listener_and_answers_what_it_read(model_path, postgres):
    """Knative's queue-proxy drains before the container gets SIGTERM, so by default there is no drain of our own
    (test_function_settings checks the default): the listener closes while a request is still arriving, and that
    request is still answered and logged."""
    environment = {"DATABASE_URL": postgres.url, "K_SERVICE": "fish", "SHUTDOWN_DRAIN_SECONDS": None}
    process, port = launch(model_path, **environment)
    slow = SlowUpload(port, png_bytes())

    process.send_signal(signal.SIGTERM)
    wait_for(lambda: refused(port), "the listener to close")
    status, body = slow.finish()

    assert status == 200, body
    assert process.wait(timeout=60) in CLEAN_EXIT
    assert_logged(postgres, [body["prediction_id"]])


def test_a_single_sigterm_drains_for_the_set_time_then_exits(model_path):
    """Off Knative, one SIGTERM is all a pod gets: /health says 503 at once, a request still sent is answered
    (and closes its connection), and the process leaves once the drain is over."""
    drain_s = 10.0  # the request below is sent within it: a loaded machine would have to stall for seconds
    process, port = launch(model_path, SHUTDOWN_DRAIN_SECONDS=str(drain_s))
    image = png_bytes()
    sent_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    with httpx.Client(timeout=30) as http:  # the signal is handled asynchronously: /health says when
        wait_for(lambda: http.get(f"http://127.0.0.1:{port}/health").status_code == 503, "/health 503")
        health = http.get(f"http://127.0.0.1:{port}/health").json()
        response = predict(http, port, image)

    assert health == {"status": "draining", "model_loaded": True, "reason": "shutting down"}
    assert response.status_code == 200 and response.headers["connection"] == "close"
    assert process.wait(timeout=60) in CLEAN_EXIT
    assert time.monotonic() - sent_at >= drain_s

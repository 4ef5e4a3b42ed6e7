"""/v2 JSON tensors near their body limit, on the real process (`python -m function`): two in flight are answered
while /health keeps answering and the process grows by a bounded amount, and a body over the limit is refused
before it is read. The model takes 112x112 (about the 96x128 the limit was first measured with) and
MAX_BATCH_FILES is 150, so that what 150 images take in JSON is more than MAX_BATCH_BYTES' 32 MiB."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests import tiny_onnx
from tests.test_function_process import CLEAN_EXIT, launch

SIZE, FILES = 112, 150
JSON_LIMIT = FILES * SIZE * SIZE * 3 * 6 + 64 * 1024  # 6 bytes a value, and 64 KiB for the rest
HEALTH_WORST_S = 0.25
GROWTH_LIMIT_BYTES = 300 * 2**20


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx", size=SIZE)


@pytest.fixture(scope="module")
def server(model_path):
    process, port = launch(model_path, MAX_BATCH_FILES=str(FILES), MAX_BATCH_BYTES=None)
    yield process, port
    process.terminate()
    assert process.wait(timeout=30) in CLEAN_EXIT


def json_tensor(pixels: np.ndarray) -> bytes:
    """Nested, with json.dumps' spaces: the most JSON a value takes ("[255, 255, 255], " for three)."""
    tensor = {"name": "image", "shape": list(pixels.shape), "datatype": "UINT8", "data": pixels.tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def memory_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class HealthPoller(threading.Thread):
    """GET /health back to back until stopped: every answer's status and how long it took."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/health"
        self.answers: list[tuple[int, float]] = []
        self.stop, self.answering = threading.Event(), threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                started = time.perf_counter()
                status = http.get(self.url).status_code
                self.answers.append((status, time.perf_counter() - started))
                self.answering.set()


def test_two_json_tensors_near_the_limit_are_answered_while_health_answers(server, model_path):
    process, port = server
    pixels = np.random.default_rng(0).integers(
        100, 256, (FILES, SIZE, SIZE, 3), dtype=np.uint8
    )  # 3 digits each
    body = json_tensor(pixels)
    assert 0.9 * JSON_LIMIT < len(body) <= JSON_LIMIT
    url = f"http://127.0.0.1:{port}/v2/models/tiny/infer"
    assert httpx.post(url, content=json_tensor(pixels[:1]), timeout=60).status_code == 200  # warm
    before = memory_bytes(process.pid, "VmRSS")
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM from here on

    poller = HealthPoller(port)
    poller.start()
    assert poller.answering.wait(30)
    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        responses = list(pool.map(lambda _: httpx.post(url, content=body, timeout=300), range(2)))
        seconds = time.perf_counter() - started
    poller.stop.set()
    poller.join(30)
    growth = memory_bytes(process.pid, "VmHWM") - before

    want = ort.InferenceSession(str(model_path)).run(None, {"image": pixels})[0].argmax(axis=1)
    for response in responses:
        assert response.status_code == 200, response.text[:300]
        probabilities, class_name = response.json()["outputs"]
        assert probabilities["shape"] == [FILES, 3]
        assert class_name["data"] == [tiny_onnx.CLASSES[i] for i in want]
    worst = max(latency for _, latency in poller.answers)
    print(f"two {len(body):,}-byte tensors answered in {seconds:.2f} s; /health worst {worst * 1000:.0f} ms over "
          f"{len(poller.answers)} polls; the process grew {growth / 2**20:.0f} MB")  # fmt: skip
    assert {status for status, _ in poller.answers} == {200}
    assert worst <= HEALTH_WORST_S
    assert growth <= GROWTH_LIMIT_BYTES


def ask(port: int, headers: dict[str, str]) -> tuple[int, str]:
    """A POST's head alone, no body byte: the answer must come without it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        lines = [f"{name}: {value}" for name, value in {"Host": "x", **headers}.items()]
        sock.sendall(("POST /v2/models/tiny/infer HTTP/1.1\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())["error"]


def test_a_body_over_its_limit_is_refused_before_it_is_read(server):
    _, port = server
    status, error = ask(port, {"Content-Type": "application/json", "Content-Length": str(JSON_LIMIT + 1)})
    assert status == 413
    assert (
        f"{JSON_LIMIT:,} bytes for JSON" in error and f"{FILES} images (MAX_BATCH_FILES) of 112x112" in error
    )
    binary = {"Inference-Header-Content-Length": "100", "Content-Length": str(32 * 2**20 + 1)}
    assert ask(port, binary) == (
        413,
        "the request body is larger than the limit of 33,554,432 bytes (MAX_BATCH_BYTES)",
    )


def test_a_json_tensor_over_max_batch_files_is_refused_for_its_shape(server):
    _, port = server
    tensor = {"name": "image", "shape": [FILES + 1, SIZE, SIZE, 3], "datatype": "UINT8", "data": [0]}
    response = httpx.post(
        f"http://127.0.0.1:{port}/v2/models/tiny/infer", json={"inputs": [tensor]}, timeout=60
    )
    assert response.status_code == 400
    assert f"N from 1 to {FILES} (MAX_BATCH_FILES)" in response.json()["error"]

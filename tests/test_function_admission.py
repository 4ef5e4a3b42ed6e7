"""Admission control and slow clients (function.http.admission, function.http.slow_bodies, function.http.server), on the real process.

Past MAX_CONCURRENT_REQUESTS an inference request is answered 503 with Retry-After without its body being read,
and its connection closes after the answer; memory follows what is admitted, not how many clients send; a body
that stalls is answered 408 and frees its slot; clients that trickle hold at most half the slots; headers that
trickle hold no slot at all and are cut off after HEADER_TIMEOUT_SECONDS."""

from __future__ import annotations

import contextlib
import io
import re
import select
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests import tiny_onnx
from tests.test_function_process import launch, multipart, png_bytes


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


def big_png(megabytes: float) -> bytes:
    """A valid image of about `megabytes` (noise does not compress)."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


class Answer:
    def __init__(self, raw: bytes):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())


def post(port: int, body: bytes, content_type: str, path: str = "/predict", timeout_s: float = 30) -> Answer:
    """POST as wrk does (no Expect: 100-continue), reading while writing: an answer that comes before the body is
    sent is read, even if the server then closes the connection under the rest of the body."""
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()  # fmt: skip
    data, received = memoryview(head + body), b""
    deadline = time.monotonic() + timeout_s
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setblocking(False)
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if data else [], [], 1)
            try:
                if writable:
                    data = data[sock.send(data[: 256 * 1024]) :]
                if readable:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        return Answer(received)
                    received += chunk
            except (BrokenPipeError, ConnectionResetError):
                data = b""  # closed under the body: what was answered before is still in our buffer
                try:
                    while chunk := sock.recv(1 << 20):
                        received += chunk
                except (BlockingIOError, ConnectionResetError):
                    pass
                return Answer(received)
    raise AssertionError("no answer in time")


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


class Trickle:
    """A request whose headers are complete and whose body comes a byte at a time, or not at all."""

    def __init__(self, port: int, image: bytes):
        body, content_type = multipart(image)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])  # fmt: skip

    def drip(self) -> None:
        with contextlib.suppress(OSError):  # closed by the server: answer() reads why
            self.sock.send(b"x")

    def answer(self, timeout_s: float) -> Answer:
        self.sock.settimeout(timeout_s)
        received = b""
        while b"\r\n\r\n" not in received or not received.endswith(b"}"):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return Answer(received)

    def answered(self) -> bool:
        return bool(select.select([self.sock], [], [], 0)[0])


def test_a_burst_beyond_the_limit_gets_200s_and_503s_with_retry_after_and_memory_stays_bounded(model_path):
    """32 clients at once, each sending 4 MB images, against 2 admitted at a time: without admission every body
    would be buffered at once (32 x 4 MB, and Litestar's multipart copies)."""
    process, port = launch(model_path, MAX_CONCURRENT_REQUESTS="2")
    try:
        body, content_type = multipart(big_png(4))
        assert post(port, body, content_type).status == 200  # warm: the first decode allocates its buffers
        before_mb, shed_before = peak_rss_mb(process.pid), metric(port, "requests_shed_total")
        answers: list[Answer] = []

        def client() -> None:
            for _ in range(4):
                answers.append(post(port, body, content_type))

        threads = [threading.Thread(target=client) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        statuses = [answer.status for answer in answers]
        assert len(answers) == 128 and set(statuses) <= {200, 503}, statuses
        shed = [answer for answer in answers if answer.status == 503]
        assert shed and statuses.count(200) >= 2
        for answer in shed:
            assert answer.headers["retry-after"] == ["1"] and answer.headers["connection"] == ["close"]
            assert answer.headers["content-type"] == ["application/problem+json"]
            assert b"at capacity" in answer.body or b"as many requests as it can" in answer.body
        assert metric(port, "requests_shed_total") - shed_before == len(shed)
        grown_mb = peak_rss_mb(process.pid) - before_mb
        assert grown_mb < 64, f"peak RSS grew by {grown_mb:.0f} MB under the burst"  # 32 bodies: 128 MB+
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_health_and_metrics_answer_while_every_slot_is_taken(model_path):
    process, port = launch(model_path, MAX_CONCURRENT_REQUESTS="1")
    held = Trickle(port, png_bytes())
    try:
        wait_held(port)
        body, content_type = multipart(png_bytes())
        assert post(port, body, content_type).status == 503
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/model_info").status_code == 200
    finally:
        held.sock.close()
        process.terminate()
        process.wait(timeout=30)


# Every spelling Litestar's router takes to an inference door: trailing and doubled slashes reach it too.
INFERENCE_SPELLINGS = ["/predict", "/predict/", "//predict", "/predict//", "/predict/batch", "/predict/batch/",
                       "//predict//batch", "/", "//", "/v2/models/tiny/infer", "/v2/models/tiny/infer/",
                       "//v2//models/tiny/versions/local/infer//"]  # fmt: skip


def test_every_spelling_of_an_inference_door_is_refused_at_capacity(model_path):
    """With the one slot held, each spelling of each door gets the 503: none reaches the model past the limit
    (with admission matching the raw path, `/predict/` and `//predict` were all answered 200)."""
    process, port = launch(model_path, MAX_CONCURRENT_REQUESTS="1", SHED_DELAY_SECONDS="0")
    held = Trickle(port, png_bytes())
    try:
        wait_held(port)
        body, content_type = multipart(png_bytes())
        statuses = {path: post(port, body, content_type, path=path).status for path in INFERENCE_SPELLINGS}
        assert statuses == dict.fromkeys(INFERENCE_SPELLINGS, 503)
    finally:
        held.sock.close()
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [*(("POST", path, True) for path in INFERENCE_SPELLINGS),
     ("GET", "/predict", False), ("GET", "/health/", False), ("GET", "//metrics", False), ("POST", "/nowhere", False),
     ("POST", "/predictions/00000000-0000-0000-0000-000000000000/feedback/", False), ("GET", "/", False),
     ("GET", "/v2/models/tiny/infer", False), ("OPTIONS", "//", False)],
)  # fmt: skip
def test_admission_counts_the_route_the_router_will_reach(model_path, method, path, expected):
    from function.app import create_app
    from function.http.routing import FindRoute
    from function.settings import Settings

    find = FindRoute(None, create_app(Settings.from_env({"MODEL_URI": str(model_path)}))).find
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    assert find(scope).inference is expected


def answers_counted(port: int) -> dict[tuple[str, str, str], float]:
    """http_requests_total by (method, path, status_code)."""
    found = {}
    for family in text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics").text):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                labels = sample.labels
                found[labels["method"], labels["path"], labels["status_code"]] = sample.value
    return found


def predicting(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "http_requests_in_progress" and sample.labels["path"] == "/predict")  # fmt: skip


def wait_held(port: int, requests: int = 1) -> None:
    """Until the trickling uploads are in the app, holding their slots (a condition, not a guess at a delay)."""
    deadline = time.monotonic() + 30
    while predicting(port) < requests:
        assert time.monotonic() < deadline, "the held uploads never reached the app"
        time.sleep(0.02)


def test_a_stalled_body_gets_a_408_and_frees_its_slot_and_every_answer_is_counted_as_sent(model_path):
    """The 408, the shed 503 and uvicorn's own 400 are each counted once with their real status: a slow phone upload
    is no 5xx on the dashboard."""
    process, port = launch(model_path, MAX_CONCURRENT_REQUESTS="1", BODY_IDLE_TIMEOUT_SECONDS="1.5")
    stalled = Trickle(port, png_bytes())
    try:
        wait_held(port)
        body, content_type = multipart(png_bytes())
        assert post(port, body, content_type, path="/predict/").status == 503
        answer = stalled.answer(timeout_s=10)
        assert answer.status == 408 and answer.headers["connection"] == ["close"], answer.body
        assert post(port, body, content_type).status == 200
        assert metric(port, "slow_uploads_total") == 1
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
        counted = answers_counted(port)
        assert {key: value for key, value in counted.items() if key[1] not in ("/metrics", "/health")} == {
            ("POST", "/predict", "408"): 1,
            ("POST", "/predict", "503"): 1,
            ("POST", "/predict", "200"): 1,
            ("(unparsed)", "(unparsed)", "400"): 1,
        }
    finally:
        stalled.sock.close()
        process.terminate()
        process.wait(timeout=30)


def test_slowloris_headers_and_bodies_hold_at_most_half_the_slots_and_prediction_still_answers(model_path):
    """200 connections sending their headers a byte at a time and 4 sending their bodies so, against 4 slots: the
    headers hold no slot, two of the bodies get their 408 as they turn slow, and a normal client is answered at
    once. The header tricklers are cut off after HEADER_TIMEOUT_SECONDS."""
    process, port = launch(model_path, MAX_CONCURRENT_REQUESTS="4", SLOW_UPLOAD_SECONDS="1",
                           HEADER_TIMEOUT_SECONDS="4")  # fmt: skip
    headers = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    bodies = [Trickle(port, png_bytes()) for _ in range(4)]
    try:
        started = time.monotonic()
        line = b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for i in range(30):  # 3 s
            for sock in headers:
                sock.send(line[i : i + 1])
            for trickle in bodies:
                trickle.drip()
            time.sleep(0.1)
        deadline = time.monotonic() + 20  # a loaded machine may send the 408s late: wait for them, dripping
        while len(cut_off := [trickle for trickle in bodies if trickle.answered()]) < 2:
            assert time.monotonic() < deadline, "no 408 for the slow bodies past the limit"
            for trickle in bodies:
                trickle.drip()
            time.sleep(0.1)
        assert len(cut_off) == 2 and {t.answer(5).status for t in cut_off} == {408}

        body, content_type = multipart(png_bytes())
        asked = time.monotonic()
        assert post(port, body, content_type).status == 200
        assert time.monotonic() - asked < 1.0

        for sock in headers:  # closed by the server 4 s after connecting: recv sees the end
            sock.settimeout(max(0.1, started + 8 - time.monotonic()))
            assert sock.recv(100) == b""
    finally:
        for sock in headers:
            sock.close()
        for trickle in bodies:
            trickle.sock.close()
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("size", [200 * 1024])
def test_headers_past_the_limit_are_refused(model_path, size):
    process, port = launch(model_path)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size)
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_refusal_waits_its_retry_after_on_a_timer_and_never_reaches_the_app():
    """The pause before a 503 is what keeps clients that ignore Retry-After from making refusals the instance's
    work: without it they ask again at once, thousands of times a second."""
    import asyncio

    from function.http.admission import Admission

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    async def refuse() -> tuple[float, list[dict]]:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        async def receive():
            raise AssertionError("a refused request's body is never read")

        door = Admission(app, lambda scope: True, limit=0, shed_delay_s=0.3)
        scope = {"type": "http", "method": "POST", "path": "/predict",
                 "headers": [(b"content-length", b"5000000")]}  # fmt: skip
        started = time.monotonic()
        await door(scope, receive, send)
        return time.monotonic() - started, sent

    waited, sent = asyncio.run(refuse())
    assert waited >= 0.3 and reached == []

    async def two_refused_with_room_to_hold_one() -> list[float]:
        door = Admission(app, lambda scope: True, limit=0, shed_delay_s=0.3, max_held=1)
        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
        answered: list[float] = []
        started = time.monotonic()

        async def send(message):
            if message["type"] == "http.response.body":
                answered.append(time.monotonic() - started)

        await asyncio.gather(door(scope, None, send), door(scope, None, send))
        return answered

    quick, held = asyncio.run(two_refused_with_room_to_hold_one())
    # past the cap a refusal is answered at once: held buffers stay bounded
    assert quick < 0.1 and held >= 0.3
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 503 and headers[b"retry-after"] == b"1" and headers[b"connection"] == b"close"

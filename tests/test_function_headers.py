"""Security headers on every answer of the real process (function.http.security_headers, function.__main__): every route of
the OpenAPI document, a 404, a 405, a 413 and a shed 503 carry nosniff, a framing rule and a referrer policy,
and none says which server answered. The page keeps its own CSP."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import uuid

import httpx
import pytest

from function.http.routes import web
from function.http.web_files import REPOSITORY_WEB
from tests import tiny_onnx
from tests.test_function_admission import Trickle, post
from tests.test_function_process import launch, multipart, png_bytes

FILLS = {"name": "tiny", "version": "7", "prediction_id": str(uuid.UUID(int=1))}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")
    process, port = launch(model, MAX_CONCURRENT_REQUESTS="1", MAX_UPLOAD_BYTES="10000")
    yield port
    process.terminate()
    process.wait(timeout=30)


def assert_secured(headers: dict[str, str] | httpx.Headers, what: str) -> None:
    assert "server" not in headers, what
    assert headers["x-content-type-options"] == "nosniff", what
    assert headers["referrer-policy"] == "no-referrer", what
    assert headers["x-frame-options"] == "DENY", what
    assert "frame-ancestors 'none'" in headers["content-security-policy"], what


def routes(port: int) -> list[tuple[str, str]]:
    document = httpx.get(f"http://127.0.0.1:{port}/schema/openapi.json").json()
    found = []
    for template, operations in document["paths"].items():
        path = template
        for name, value in FILLS.items():
            path = path.replace(f"{{{name}}}", value)
        found += [(method.upper(), path) for method in operations]
    return found


def test_every_route_in_the_openapi_document_carries_the_headers(server):
    found = routes(server)
    assert len(found) >= 15 and ("POST", "/predict") in found
    with httpx.Client(base_url=f"http://127.0.0.1:{server}", timeout=30) as http:
        # and the routes left out of the document: Prometheus' text and the page's files
        undocumented = [("GET", "/metrics"), ("GET", "/static/x/app.js"), ("GET", "/static/x/nothing.js")]
        for method, path in [*found, *undocumented, ("GET", "/schema/openapi.json"), ("GET", "/schema")]:
            answer = http.request(method, path, content=b"" if method == "POST" else None)
            assert answer.status_code < 500 or answer.status_code == 503, (method, path, answer.text)
            assert_secured(answer.headers, f"{method} {path} {answer.status_code}")


def test_errors_carry_them_too(server):
    with httpx.Client(base_url=f"http://127.0.0.1:{server}", timeout=30) as http:
        missing = http.get("/nowhere")
        wrong_method = http.delete("/predict")
        too_large = http.post("/predict", files={"file": ("a.png", b"x" * 20000)})
    assert (missing.status_code, wrong_method.status_code, too_large.status_code) == (404, 405, 413)
    for answer in (missing, wrong_method, too_large):
        assert_secured(answer.headers, str(answer.status_code))
        assert answer.headers["content-type"] == "application/problem+json"


def test_head_is_answered_as_get_without_the_body(server):
    with httpx.Client(base_url=f"http://127.0.0.1:{server}", timeout=30) as http:
        got, head = http.get("/model_info"), http.head("/model_info")
        head_of_a_post_route = http.head("/predict")
    assert (got.status_code, head.status_code) == (200, 200) and head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["content-type"] == got.headers["content-type"]
    assert_secured(head.headers, "HEAD")
    assert head_of_a_post_route.status_code == 405 and "POST" in head_of_a_post_route.headers["allow"]


def test_the_shed_503_carries_them(server):
    held = Trickle(server, png_bytes())  # holds the one slot
    try:
        body, content_type = multipart(png_bytes())
        answer = post(server, body, content_type)
        assert answer.status == 503 and answer.headers["retry-after"] == ["1"]
        assert_secured({name: values[0] for name, values in answer.headers.items()}, "shed 503")
    finally:
        held.sock.close()


@pytest.mark.parametrize(
    ("sent", "detail"),
    [(b"NOT HTTP AT ALL\r\n\r\n", "Invalid HTTP request received."),
     (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", "exceed 64 KiB")],
    ids=["unparsable", "headers too large"],
)  # fmt: skip
def test_the_servers_own_400_is_a_problem_with_them_too(server, sent, detail):
    """uvicorn answers these before any app code runs (function.http.server replaces its plain-text 400)."""
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.settimeout(10)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(sent)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        body = json.loads(answer.read())
    assert (answer.status, body["status"]) == (400, 400) and detail in body["detail"]
    assert answer.getheader("content-type") == "application/problem+json"
    assert answer.getheader("connection") == "close"
    assert_secured({name.lower(): value for name, value in answer.getheaders()}, detail)


def test_small_headers_with_a_large_body_in_one_read_are_not_taken_for_large_headers(server):
    """The header limit counts the headers only, though the first read holds the body's start too."""
    body, content_type = multipart(b"x" * 300_000)
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.settimeout(10)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head.encode() + body)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
    assert answer.status == 413  # the fixture's MAX_UPLOAD_BYTES, not the 400 for headers


@pytest.mark.skipif(not (REPOSITORY_WEB / "node_modules").exists(), reason="npm ci in web/ first")
def test_the_page_keeps_its_own_policy_and_a_missing_file_names_no_server_path(server, tmp_path):
    page = httpx.get(f"http://127.0.0.1:{server}/")
    assert page.status_code == 200 and "server" not in page.headers
    assert page.headers["content-security-policy"] == web.PAGE_HEADERS["Content-Security-Policy"]
    assert page.headers.get_list("x-frame-options") == ["DENY"]  # not twice

    process, port = launch(tiny_onnx.build(tmp_path / "tiny.onnx"), WEB_DIR=str(tmp_path / "nowhere"))
    try:
        missing = httpx.get(f"http://127.0.0.1:{port}/")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert missing.status_code == 404 and "WEB_DIR" in missing.json()["detail"]
    assert str(tmp_path) not in missing.text

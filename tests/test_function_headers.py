"""Security headers on every answer of the real process (function.admission, function.__main__): every route of
the OpenAPI document, a 404, a 405, a 413 and a shed 503 carry nosniff, a framing rule and a referrer policy,
and none says which server answered. The page keeps its own CSP."""

from __future__ import annotations

import uuid

import httpx
import pytest

from function.routes import web
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


def test_the_shed_503_carries_them(server):
    held = Trickle(server, png_bytes())  # holds the one slot
    try:
        body, content_type = multipart(png_bytes())
        answer = post(server, body, content_type)
        assert answer.status == 503 and answer.headers["retry-after"] == ["1"]
        assert_secured({name: values[0] for name, values in answer.headers.items()}, "shed 503")
    finally:
        held.sock.close()


@pytest.mark.skipif(not (web.REPOSITORY_WEB / "node_modules").exists(), reason="npm ci in web/ first")
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

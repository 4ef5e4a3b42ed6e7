"""Schemathesis over every operation of the function's own OpenAPI document, against the real process
(`python -m function` on the tiny model, its prediction log in a real PostgreSQL): no 5xx at all, every status
code, content type, header and body as documented, a 405 with its Allow header, and no answer that shows a
traceback or a path of the server. Then the same hygiene in unit tests of `function.http.problems`.

No 503 is allowed: the model is loaded before the first request and the log's database is up, so the two
documented 503s (model not loaded, prediction log off) cannot happen here. FUZZ_EXAMPLES bounds the examples per
operation (`task fuzz` runs 500); runs are derandomized and keep no example database."""

from __future__ import annotations

import base64
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar.testing import TestClient
from PIL import Image
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from function.app import create_app
from function.http import problems
from function.settings import Settings
from tests import tiny_onnx
from tests.postgres import fresh_database
from tests.readiness import wait_healthy
from tests.test_function_process import launch

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
REPOSITORY = Path(__file__).resolve().parents[1]
# What an answer must never show: a traceback's lines, and the places this server keeps its code and files.
INTERNALS = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|site-packages|"
    + "|".join(re.escape(str(place)) for place in {REPOSITORY, Path(sys.prefix), Path(tempfile.gettempdir())})
)


# The process's configuration, and so its document: the batch limits are in the batch operation's schema.
ENV = {"MAX_UPLOAD_BYTES": "200000", "MAX_BATCH_FILES": "4"}
# The document the process serves (its environment is this one's: launch() passes it on), made by the same
# create_app here at collection, since pytest collects the operations before any fixture runs;
# test_the_document_is_the_one_the_process_serves holds the two equal.
DOCUMENT = create_app(
    Settings.from_env({**os.environ, **ENV, "MODEL_URI": "unused.onnx"})
).openapi_schema.to_schema()
# The Open Inference Protocol's paths name the model: mostly the one served (tiny, version "local", a file's), so
# that the infer bodies get past the 404, and otherwise whatever Schemathesis makes.
SERVED = {"name": "tiny", "version": "local"}
CONFIG = schemathesis.Config.from_dict(
    {
        "dictionaries": {field: {"values": [value]} for field, value in SERVED.items()},
        "parameters": {f"path.{field}": {"dictionary": field, "probability": 0.8} for field in SERVED},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """The function on a free port with the tiny model and a log database of its own; its base URL."""
    model = tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")
    with fresh_database(postgres.url, "openapi") as database_url:
        process, port = launch(model, DATABASE_URL=database_url, **ENV)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_the_document_is_the_one_the_process_serves(server):
    assert httpx.get(f"{server}/schema/openapi.json").json() == DOCUMENT


def no_internals(ctx, response, case) -> None:
    """No error answer names a place on the server or shows a traceback: problem details, the Open Inference
    Protocol's {"error": ...}, and a batch's per-file problems. (A 200's own fields are data, not errors:
    /model_info's `uri` is MODEL_URI, here a local file, and says so by design.)"""
    text = response.content.decode("utf-8", "replace")
    if response.status_code >= 400 or '"problem":{' in text:
        assert not INTERNALS.search(text), f"{case.method} {case.path}: internals in {text[:500]}"


def method_not_allowed_says_allow(ctx, response, case) -> None:
    if response.status_code == 405:
        assert response.headers.get("allow"), f"{case.method} {case.path}: 405 without an Allow header"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    allow_header_conformance,
]
# Known gaps in the document, in files these tests do not own: each operation is spared exactly the one check it
# fails, and still gets every other. Remove an entry when its fix lands.
KNOWN_GAPS: dict = {}  # (method, path) -> a check that operation may skip, with the reason beside it


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case, server):
    gap = KNOWN_GAPS.get((case.method.upper(), case.operation.path))
    case.call_and_validate(
        base_url=server,
        checks=[check for check in CHECKS if check is not gap],
        additional_checks=[no_internals, method_not_allowed_says_allow],
        timeout=30,
    )


# Problem details hygiene, door by door: what a client reads never shows a traceback or where the server keeps
# its files, whatever the exception's own text says.
PLACE = f"{REPOSITORY}/function/secret_module.py"
LEAKY = f'cannot read {PLACE}\nTraceback (most recent call last):\n  File "{PLACE}", line 7, in decode'


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def assert_clean(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert not INTERNALS.search(response.text), response.text
    return response.text


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def client(model_path, tmp_path):
    env = {"MODEL_URI": str(model_path), "WEB_DIR": str(tmp_path / "no-web-ui-here")}
    with TestClient(create_app(Settings.from_env(env))) as client:
        wait_healthy(client)
        yield client


def test_safe_cuts_tracebacks_and_the_servers_folders_and_leaves_urls():
    assert problems.safe(LEAKY) == "cannot read .../secret_module.py"
    assert problems.safe("/tmp/x/model.onnx: no such file") == ".../model.onnx: no such file"
    url = "https://images.example.com/tmp/fish/a.jpg is not under an allowed prefix"
    assert problems.safe(url) == url
    assert (
        problems.safe("Validation failed for GET /predictions?limit=x")
        == "Validation failed for GET /predictions?limit=x"
    )


def test_an_image_error_naming_a_path_reaches_no_door_with_it(client, monkeypatch):
    from function.inference import images

    def leaky(data, size, max_pixels):
        raise images.CorruptImage(LEAKY)

    monkeypatch.setattr(images, "decode", leaky)
    files = {"file": ("a.png", png(), "image/png")}
    assert "secret_module.py" in assert_clean(client.post("/predict", files=files), 422)
    batch = client.post("/predict/batch", files=[("file", ("a.png", png(), "image/png"))])
    assert '"status":422' in assert_clean(batch, 200).replace(" ", "")
    tensor = base64.b64encode(png()).decode()
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [tensor]}],
            "parameters": {"content_type": "base64"}}  # fmt: skip
    assert_clean(client.post("/v2/models/tiny/infer", json=body), 400)


def test_a_pillow_error_naming_a_path_is_not_passed_on(client, monkeypatch):
    from function.inference import images

    def open_(*args, **kwargs):
        raise OSError(LEAKY)

    monkeypatch.setattr(images.Image, "open", open_)
    problem = assert_clean(client.post("/predict", files={"file": ("a.png", png(), "image/png")}), 422)
    assert "truncated or corrupt" in problem


def test_a_missing_web_ui_file_is_a_404_that_names_the_file_not_the_folder(client, tmp_path, monkeypatch):
    text = assert_clean(client.get("/"), 404)
    assert "index.html" in text and str(tmp_path) not in text
    # And whatever a route puts in an HTTPException's detail: the app's mapping cuts it too.
    from litestar.exceptions import NotFoundException

    from function.http import web_files

    def missing(self, name):
        raise NotFoundException(f"the web UI's file {name} is not installed ({PLACE})")

    monkeypatch.setattr(web_files.WebFiles, "asset", missing)
    assert "(.../secret_module.py)" in assert_clean(client.get("/"), 404)


def test_an_internal_error_is_a_500_that_says_nothing_of_it_and_logs_it(client, monkeypatch, caplog):
    from function.inference.service import PredictionService

    async def broken(self, data, context):
        raise RuntimeError(f"boom in {PLACE}")

    monkeypatch.setattr(PredictionService, "predict", broken)
    text = assert_clean(client.post("/predict", files={"file": ("a.png", png(), "image/png")}), 500)
    assert "boom" not in text and "the error is logged" in text
    assert any("boom" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


def test_litestars_own_errors_are_clean_and_a_405_says_allow(client):
    assert_clean(client.post("/predictions/not-a-uuid/feedback", json={"correct": True}), 404)
    assert_clean(client.get("/predictions?limit=abc", headers={"X-Client-Id": "abcdefgh"}), 400)
    uuid = "00000000-0000-4000-8000-000000000000"
    assert_clean(client.post(f"/predictions/{uuid}/feedback", json={"correct": "yes"}), 400)
    response = client.get("/predict")
    assert_clean(response, 405)
    assert set(response.headers["allow"].split(", ")) == {"OPTIONS", "POST"}
    assert set(client.options("/").headers["allow"].split(", ")) == {"GET", "OPTIONS", "POST"}


def test_a_model_that_cannot_load_is_named_without_its_folder(tmp_path):
    settings = Settings.from_env({"MODEL_URI": str(tmp_path / "missing.onnx")})
    with TestClient(create_app(settings)) as client:
        while "still loading" in (reason := client.get("/health").json()["reason"]):
            time.sleep(0.02)
        text = assert_clean(client.post("/predict", files={"file": ("a.png", png(), "image/png")}), 503)
    assert "missing.onnx" in text and str(tmp_path) not in text and str(tmp_path) in reason

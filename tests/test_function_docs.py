"""function/http/routes/docs.py: the API documentation at /schema/swagger. In a real Chromium (Debian's, driven by
Playwright) against the real process: Swagger UI renders the function's operations from the function's own files,
with the web UI on or off, and no request leaves for another host; "Try it out" reaches the function under the
page's policy. Without Swagger UI's files the page says where the OpenAPI document is."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from function.app import create_app
from function.http import web_files
from function.http.routes import web
from function.settings import Settings
from tests import tiny_onnx
from tests.readiness import wait_healthy
from tests.test_function_process import launch

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SWAGGER = web_files.REPOSITORY_WEB / "node_modules" / "swagger-ui-dist"
TIMEOUT_MS = 20_000


def _needed(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _needed(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    if not SWAGGER.exists():
        _needed("the API documentation's test needs web/node_modules (npm ci in web/)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def function(model_path, request):
    process, port = launch(model_path, **getattr(request, "param", {}))
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.parametrize(
    "function", [{"WEB_UI": "on"}, {"WEB_UI": "off"}], indirect=True, ids=["ui", "no-ui"]
)
def test_swagger_ui_renders_the_operations_with_no_request_to_another_host(browser, function):
    context = browser.new_context()
    foreign, errors, answered = [], [], []

    def only_the_function(route) -> None:
        if route.request.url.startswith(f"{function}/"):
            route.continue_()
        else:  # recorded, and never sent: the page must render without it
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_function)
    page = context.new_page()
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: answered.append((response.url, response.status)))
    try:
        page.goto(f"{function}/schema/swagger")  # until its load event: every script has come, or failed
        assert foreign == []
        predict = page.locator('.opblock-post .opblock-summary-path[data-path="/predict"]')
        predict.wait_for(state="visible", timeout=TIMEOUT_MS)
        assert page.locator('.opblock-summary-path[data-path="/v2/models/{name}/infer"]').count() == 1
        # "Try it out" on GET /health: Swagger UI's own fetch reaches the function under the page's policy.
        health = page.locator("#operations-default-HealthHealth")
        health.locator(".opblock-summary").click()
        health.get_by_role("button", name="Try it out").click()
        health.get_by_role("button", name="Execute").click()
        status = health.locator(".live-responses-table tr.response .response-col_status")
        status.wait_for(timeout=TIMEOUT_MS)
        assert status.inner_text().strip() == "200"
    finally:
        context.close()
    assert foreign == []
    assert errors == []  # no script error and no Content-Security-Policy violation
    static = [url for url, code in answered if "/schema/static/" in url]
    assert len(static) == 3 and all(code == 200 for url, code in answered if url in static), answered


def test_the_page_has_its_own_policy_and_files_under_schema(model_path):
    with TestClient(create_app(Settings.from_env({"MODEL_URI": str(model_path), "WEB_UI": "off"}))) as http:
        wait_healthy(http)
        page = http.get("/schema/swagger")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = dict(
            part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
        )
        assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'" and policy["connect-src"] == "'self'"
        assert "<script>" not in page.text and "https://" not in page.text
        assert http.get("/schema").text == page.text  # the root of /schema is the same page
        files = re.findall(r'(?:href|src)="(/schema/static/[^"]+)"', page.text)
        assert len(files) == 3
        for path in files:
            answer = http.get(path)
            assert answer.status_code == 200 and answer.headers["cache-control"] == web.IMMUTABLE
        bundle = next(path for path in files if path.endswith("swagger-ui-bundle.js"))
        assert http.get(bundle).content == (SWAGGER / "swagger-ui-bundle.js").read_bytes()
        for other in ("app.js", "swagger-ui.js", "../pyproject.toml", "index.html"):
            assert http.get(f"/schema/static/x/{other}").status_code == 404
        # The web UI's own page keeps its own policy: it is not the documentation's.
    with TestClient(create_app(Settings.from_env({"MODEL_URI": str(model_path)}))) as http:
        assert http.get("/").headers["content-security-policy"] == web.PAGE_HEADERS["Content-Security-Policy"]


def test_without_swagger_files_the_page_says_where_the_document_is(model_path, tmp_path):
    env = {"MODEL_URI": str(model_path), "WEB_DIR": str(tmp_path / "no-web-files")}
    with TestClient(create_app(Settings.from_env(env))) as http:
        page = http.get("/schema/swagger")
        assert page.status_code == 200 and "<script" not in page.text
        assert 'href="/schema/openapi.json"' in page.text and "npm ci" in page.text
        assert str(tmp_path) not in page.text
        assert httpx.codes.is_success(http.get("/schema/openapi.json").status_code)

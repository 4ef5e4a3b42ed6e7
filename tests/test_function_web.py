"""function/http/routes/web.py and web_files.py: the page and its files, their cache and security headers, gzip, the folder an
image carries (collect), and an app without them (WEB_UI=off)."""

from __future__ import annotations

import gzip
import io

import pytest
from litestar import Litestar
from litestar.di import Provide
from litestar.testing import TestClient
from PIL import Image

from function.app import create_app
from function.http import collect_web, doors, web_files
from function.http.routes import web
from function.settings import Settings
from tests import tiny_onnx
from tests.readiness import wait_healthy

NODE_MODULES = web_files.REPOSITORY_WEB / "node_modules"
pytestmark = pytest.mark.skipif(not NODE_MODULES.exists(), reason="npm ci in web/ first")


def client(folder=None) -> TestClient:
    files = web_files.WebFiles(folder)
    provided = Provide(lambda: files, use_cache=True, sync_to_thread=False)
    return TestClient(Litestar(route_handlers=doors.web_doors(), dependencies={"web_files": provided}))


def test_the_page_has_its_security_and_cache_headers():
    with client() as http:
        page = http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        for name, value in web.PAGE_HEADERS.items():
            assert page.headers[name] == value
        assert "'unsafe-inline'" not in page.headers["content-security-policy"]
        assert 'style="' not in page.text and "<script>" not in page.text
        assert http.get("/", headers={"If-None-Match": page.headers["etag"]}).status_code == 304


def test_files_are_versioned_immutable_and_gzipped():
    with client() as http:
        version = http.get("/").text.split('href="static/')[1].split("/")[0]
        css = http.get(f"/static/{version}/vendor/bootstrap.min.css", headers={"Accept-Encoding": "gzip"})
        assert css.status_code == 200 and css.headers["content-encoding"] == "gzip"
        assert css.headers["cache-control"] == web.IMMUTABLE
        assert (
            css.content == (NODE_MODULES / "bootstrap/dist/css/bootstrap.min.css").read_bytes()
        )  # httpx unzips
        raw = http.get(f"/static/{version}/app.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in raw.headers and raw.headers["x-content-type-options"] == "nosniff"
        assert raw.headers["content-type"].startswith("text/javascript")
        old = http.get("/static/000000000000/app.js")
        assert old.status_code == 200 and old.headers["cache-control"] == "no-cache"


def test_the_page_may_send_no_form_and_use_no_camera():
    """Its forms are sent by script; the camera button is `<input capture>`, which needs no permission."""
    with client() as http:
        page = http.get("/")
        assert "form-action 'none'" in page.headers["content-security-policy"]
        assert page.headers["permissions-policy"] == "camera=(), microphone=(), geolocation=()"
        assert (
            'capture="environment"' in page.text
            and "getUserMedia" not in (web_files.REPOSITORY_WEB / "app.js").read_text()
        )


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        ("{etag}", 304),
        ('"other", {etag}', 304),
        ("W/{etag}", 304),
        ("*", 304),
        ("x{etag}x", 200),
        ('"other"', 200),
    ],
)
def test_if_none_match_is_a_list_of_tags_not_a_substring(if_none_match, status):
    with client() as http:
        etag = http.get("/").headers["etag"]
        assert http.get("/", headers={"If-None-Match": if_none_match.format(etag=etag)}).status_code == status


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [("gzip", True), ("deflate, gzip;q=0.5", True), ("*", True), ("gzip;q=0", False), ("GZIP;Q=0", False),
     ("*;q=0", False), ("gzip;q=0, *", False), ("identity", False), ("br", False)],
)  # fmt: skip
def test_accept_encoding_is_parsed_with_its_weights(accept_encoding, gzipped):
    with client() as http:
        version = http.get("/").text.split('href="static/')[1].split("/")[0]
        css = http.get(
            f"/static/{version}/vendor/bootstrap.min.css", headers={"Accept-Encoding": accept_encoding}
        )
        assert (css.headers.get("content-encoding") == "gzip") is gzipped


@pytest.mark.parametrize("name", ["node_modules/axe-core/axe.min.js", "../pyproject.toml", "package.json"])
def test_nothing_else_is_served(name):
    with client() as http:
        answer = http.get(f"/static/x/{name}")
        assert answer.status_code == 404


def test_a_missing_folder_is_a_404_that_says_what_to_do(tmp_path):
    with client(tmp_path / "nowhere") as http:
        answer = http.get("/")
        assert answer.status_code == 404 and "WEB_DIR" in answer.json()["detail"]


def test_collect_copies_only_what_is_served(tmp_path):
    collect_web.collect(web_files.REPOSITORY_WEB, tmp_path)
    copied = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    served = [web_files.INDEX, *web_files.FILES.values(), *web_files.DOCS_FILES.values()]
    assert copied == sorted([*served, *collect_web.LICENSES])
    with client(tmp_path) as http:
        version = http.get("/").text.split('href="static/')[1].split("/")[0]
        assert http.get(f"/static/{version}/vendor/chart.umd.min.js").status_code == 200


def test_gzip_only_where_it_pays():
    asset = web_files.Asset.of(b"x" * 100, ".js")
    assert asset.gzipped is None
    big = web_files.Asset.of(b"let a = 1;\n" * 1000, ".js")
    assert gzip.decompress(big.gzipped) == b"let a = 1;\n" * 1000


@pytest.mark.parametrize("web_ui", ["on", "off"])
def test_web_ui_off_leaves_the_page_out_and_the_api_in(tmp_path, web_ui):
    model = tiny_onnx.build(tmp_path / "tiny.onnx")
    photo = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 30, 220)).save(photo, "JPEG")
    with TestClient(create_app(Settings.from_env({"MODEL_URI": str(model), "WEB_UI": web_ui}))) as http:
        wait_healthy(http)
        page, script = http.get("/"), http.get("/static/x/app.js")
        if web_ui == "on":
            assert page.status_code == 200 and script.status_code == 200
        else:  # no route at all: / is only CloudEvents' POST, /static/ is an unknown path
            assert page.status_code == 405
            assert script.status_code == 404 and script.json()["detail"] == "Not Found"
        predicted = http.post("/predict", files={"file": ("fish.jpg", photo.getvalue(), "image/jpeg")})
        assert predicted.status_code == 200 and predicted.json()["class"] == "blue"

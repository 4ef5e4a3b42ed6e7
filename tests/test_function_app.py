"""The Litestar app on a tiny ONNX model: every endpoint, and a corpus of bad requests (4xx, never 5xx)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from function import metrics
from function.app import create_app
from function.settings import Settings
from tests import tiny_onnx
from tests.readiness import wait_healthy


def jpeg(colour, size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def png(colour, size=(16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def png_noise(side: int) -> bytes:
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def assert_problem(response, status: int) -> dict:
    """An RFC 9457 problem: the media type, the four members, the status in the body matching the response."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["type"] == "about:blank"
    assert problem["title"] and problem["detail"]
    return problem


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def client(model_path, tmp_path):
    env = {
        "MODEL_URI": str(model_path),
        "MAX_UPLOAD_BYTES": "200000",
        "K_REVISION": "fish-00007",
        "K_SERVICE": "fish",
    }
    with TestClient(create_app(Settings.from_env(env))) as client:
        wait_healthy(client)
        yield client


def test_predict_answers_200_with_the_team_contract(client):
    response = client.post("/predict", files={"file": ("fish.jpg", jpeg((20, 30, 220)), "image/jpeg")})
    assert response.status_code == 200
    body = response.json()
    assert body["class"] == "blue" and body["confidence"] == max(body["all_predictions"].values())
    assert abs(sum(body["all_predictions"].values()) - 1) < 1e-5
    assert (
        0 < body["prediction_time"] < 5
        and body["model_version"] == "local"
        and len(body["prediction_id"]) == 36
    )


def test_all_predictions_are_ranked_highest_first_not_in_class_order(client):
    # blue, then green (30), then red (20): the reverse of the model's class order red, green, blue
    body = client.post("/predict", files={"file": ("f.png", png((20, 30, 220)), "image/png")}).json()
    ranked = list(body["all_predictions"])
    assert ranked == ["blue", "green", "red"] and ranked != tiny_onnx.CLASSES
    assert list(body["all_predictions"].values()) == sorted(body["all_predictions"].values(), reverse=True)


def test_top_k_limits_the_list_to_the_most_likely(client):
    body = client.post("/predict?top_k=2", files={"file": ("f.png", png((20, 30, 220)), "image/png")}).json()
    assert list(body["all_predictions"]) == ["blue", "green"]


@pytest.mark.parametrize("top_k", ["-1", "0", "4", "abc"])
def test_top_k_out_of_range_is_a_400_problem_that_says_the_range(client, top_k):
    response = client.post(f"/predict?top_k={top_k}", files={"file": ("f.png", png((1, 2, 3)), "image/png")})
    problem = assert_problem(response, 400)
    if top_k != "abc":
        assert "between 1 and 3" in problem["detail"]


def test_max_upload_bytes_holds_for_the_file_not_the_request(client):
    """MAX_UPLOAD_BYTES is 200,000 here: a valid 200 KB+ image is refused as too large (not decoded), whether or
    not the multipart request around it is under the server's body limit."""
    big_image = png_noise(260)  # a valid PNG of a little over 200,000 bytes
    assert 200_000 < len(big_image) < 200_000 + 64 * 1024
    problem = assert_problem(client.post("/predict", files={"file": ("n.png", big_image, "image/png")}), 413)
    assert "200,000" in problem["detail"] and "MAX_UPLOAD_BYTES" in problem["detail"]
    huge = client.post("/predict", files={"file": ("n.bin", b"\xff" * 400_000, "image/jpeg")})
    assert "MAX_UPLOAD_BYTES" in assert_problem(huge, 413)["detail"]
    small = client.post("/predict", files={"file": ("n.png", png_noise(100), "image/png")})
    assert small.status_code == 200


def test_uploads_stay_in_memory_not_on_disk(model_path, monkeypatch):
    """A phone photo (3 MB here, a 12 MP JPEG is 3-5 MB) is held in memory, not spooled to /tmp and read back:
    any temporary file made while the request is read fails it. Litestar's parser spools files over 1 MiB."""
    import tempfile

    settings = Settings.from_env({"MODEL_URI": str(model_path), "MAX_UPLOAD_BYTES": str(8 * 1024 * 1024)})
    photo = png_noise(1000)  # 3 MB of noise a PNG cannot shrink
    assert len(photo) > 2 * 1024 * 1024
    with TestClient(create_app(settings)) as client:
        wait_healthy(client)

        def no_disk(*args, **kwargs):
            raise AssertionError("an upload was written to a temporary file")

        monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
        monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_disk)
        one = client.post("/predict", files={"file": ("p.png", photo, "image/png")})
        assert one.status_code == 200, one.text
        batch = client.post("/predict/batch", files=[("file", ("a.png", photo, "image/png"))] * 2)
        assert batch.status_code == 200, batch.text
        assert [result["prediction"]["class"] for result in batch.json()["results"]] == [
            one.json()["class"]
        ] * 2


MALFORMED_BODIES = {
    "a part left open": b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc',
    "no closing boundary": b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc\r\n',
    "no part headers": b"--b\r\n\r\nabc\r\n--b--\r\n",
    "not multipart at all": b"hello",
    "empty body": b"",
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_malformed_multipart_is_a_4xx_problem(client, path, body):
    response = client.post(path, content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)
    assert_problem(client.post(path, content=b"x", headers={"content-type": "multipart/form-data"}), 400)


def test_unknown_paths_and_methods_are_problems_too(client):
    assert_problem(client.get("/nope"), 404)
    assert_problem(client.get("/predict"), 405)


def test_health_and_model_info(client):
    assert client.get("/health").json() == {"status": "healthy", "model_loaded": True, "reason": None}
    info = client.get("/model_info").json()
    assert info["classes"] == tiny_onnx.CLASSES and info["input_size"] == [8, 8]
    assert info["source_version"] == "7" and info["revision"] == "fish-00007" and info["service"] == "fish"


def test_metrics_count_predictions_and_requests(client):
    """The change one prediction makes, not the presence of series other tests in this process created."""

    def samples() -> dict[str, float]:
        found = {}
        for family in text_string_to_metric_families(client.get("/metrics").text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
                found[f"{sample.name}{{{labels}}}"] = (
                    found.get(f"{sample.name}{{{labels}}}", 0) + sample.value
                )
        return found

    before = samples()
    answer = client.post("/predict", files={"file": ("f.jpg", jpeg((10, 200, 10)), "image/jpeg")})
    after = samples()
    grew = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    bucket = metrics.confidence_bucket(answer.json()["confidence"])
    assert grew[f"predictions_total{{class=green,confidence_bucket={bucket}}}"] == 1
    assert grew["prediction_latency_seconds_count{}"] == 1
    posts = [name for name in grew if name.startswith("http_requests_total{") and "path=/predict" in name]
    assert len(posts) == 1 and "status_code=200" in posts[0] and grew[posts[0]] == 1
    assert after["model_info{name=tiny,precision=fp32,source_version=7,version=local}"] == 1


def test_openapi_documents_every_endpoint(client):
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert {"/predict", "/health", "/model_info"} <= set(paths)
    predict = paths["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(predict)
    assert "application/problem+json" in predict["413"]["content"]
    assert "503" in paths["/health"]["get"]["responses"]


BAD_REQUESTS = [
    ("empty file", {"files": {"file": ("a.jpg", b"", "image/jpeg")}}, 415),
    ("text file", {"files": {"file": ("a.txt", b"just words", "text/plain")}}, 415),
    ("truncated jpeg", {"files": {"file": ("a.jpg", jpeg((1, 2, 3), (300, 300))[:400], "image/jpeg")}}, 422),
    ("wrong field", {"files": {"image": ("a.jpg", jpeg((1, 2, 3)), "image/jpeg")}}, 422),
    (
        "form without file",
        {"data": {"file": "not a file"}, "files": {"other": ("x", b"x", "text/plain")}},
        422,
    ),
    ("json body", {"json": {"file": "x"}}, 415),
    ("no body", {}, 415),
    ("too large upload", {"files": {"file": ("a.bin", b"\xff" * 400_000, "image/jpeg")}}, 413),
    ("urlencoded form", {"data": {"file": "x"}}, 415),
]


@pytest.mark.parametrize(("what", "request_kwargs", "status"), BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS])
def test_bad_requests_get_a_clear_4xx(client, what, request_kwargs, status):
    assert_problem(client.post("/predict", **request_kwargs), status)
    assert client.get("/health").status_code == 200  # and the service keeps serving


def test_decompression_bomb_is_413(model_path):
    buffer = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buffer, "PNG")  # 9 MP of zeros compresses to a few KB
    settings = Settings.from_env({"MODEL_URI": str(model_path), "MAX_IMAGE_PIXELS": "4000000"})
    with TestClient(create_app(settings)) as client:
        wait_healthy(client)
        response = client.post("/predict", files={"file": ("bomb.png", buffer.getvalue(), "image/png")})
    assert "pixels" in assert_problem(response, 413)["detail"]


def test_health_is_503_with_a_reason_when_the_model_cannot_load(tmp_path):
    settings = Settings.from_env({"MODEL_URI": str(tmp_path / "missing.onnx")})
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60  # a failed load is quick; a loaded machine is not
        while "still loading" in (reason := client.get("/health").json()["reason"]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.get("/health").status_code == 503 and "missing.onnx" in reason
        predict = client.post("/predict", files={"file": ("a.jpg", jpeg((1, 2, 3)), "image/jpeg")})
        assert "missing.onnx" in assert_problem(predict, 503)["detail"]


def test_served_probabilities_match_onnxruntime_directly(client, model_path):
    import onnxruntime as ort

    image = np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    body = client.post("/predict", files={"file": ("a.png", buffer.getvalue(), "image/png")}).json()
    want = ort.InferenceSession(str(model_path)).run(None, {"image": image[None]})[0][0]
    for name, p in zip(tiny_onnx.CLASSES, want, strict=True):
        assert abs(body["all_predictions"][name] - p) < 1e-6

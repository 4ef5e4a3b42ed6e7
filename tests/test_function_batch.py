"""POST /predict/batch on the tiny model: a result per file in order, equal to /predict's; a bad file gets the
problem /predict would give it and the others are classified; the request's own limits; rows logged as 'batch'."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import psycopg
import pytest
from litestar.testing import TestClient

from function.app import create_app
from function.inference.outcome import RequestContext
from function.inference.service import PredictionService
from function.model.classifier import Classifier
from function.model.slot import ModelSlot
from function.model.source import ModelSource
from function.prediction_log import PostgresLog
from function.settings import Settings
from tests import tiny_onnx
from tests.postgres import fresh_database
from tests.readiness import wait_healthy
from tests.test_function_app import assert_problem, jpeg, png, png_noise

MAX_UPLOAD_BYTES = 200_000
MAX_BATCH_FILES = 4


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


def serve(model_path, log=None, **env) -> TestClient:
    settings = Settings.from_env(
        {
            "MODEL_URI": str(model_path),
            "MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
            "MAX_BATCH_FILES": str(MAX_BATCH_FILES),
            **env,
        }
    )
    return TestClient(create_app(settings, prediction_log=log))


@pytest.fixture
def client(model_path):
    with serve(model_path) as client:
        wait_healthy(client)
        yield client


def batch(client, files: list[tuple[str, bytes]], field: str = "file", query: str = ""):
    parts = [(field, (name, data, "application/octet-stream")) for name, data in files]
    return client.post(f"/predict/batch{query}", files=parts)


GOOD = [
    ("red.jpg", jpeg((220, 20, 30))),
    ("blue.png", png((20, 30, 220))),
    ("green.png", png((10, 200, 10))),
]


def test_a_result_per_file_in_order_each_what_predict_answers(client):
    response = batch(client, GOOD)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["red.jpg", "blue.png", "green.png"]
    assert [r["prediction"]["class"] for r in results] == ["red", "blue", "green"]
    for (name, data), result in zip(GOOD, results, strict=True):
        alone = client.post("/predict", files={"file": (name, data)}).json()
        got = result["prediction"]
        assert result["problem"] is None
        assert list(got["all_predictions"]) == list(alone["all_predictions"])  # same ranking
        assert got["all_predictions"] == pytest.approx(alone["all_predictions"], abs=1e-6)
        assert got["confidence"] == pytest.approx(alone["confidence"], abs=1e-6)
        assert got["model_version"] == alone["model_version"] == "local" and got["prediction_time"] > 0
    assert len({r["prediction"]["prediction_id"] for r in results}) == len(GOOD)  # a row each


BAD_FILES = [
    ("corrupt.jpg", jpeg((1, 2, 3), (300, 300))[:400], 422),
    ("words.txt", b"just words", 415),
    ("empty.jpg", b"", 415),
    ("oversize.png", png_noise(260), 413),  # a valid PNG a little over MAX_UPLOAD_BYTES
]


@pytest.mark.parametrize(("name", "data", "status"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_file_gets_the_problem_predict_would_give_it_and_the_others_are_classified(
    client, name, data, status
):
    response = batch(client, [GOOD[0], (name, data), GOOD[1]])
    assert response.status_code == 200, response.text
    first, bad, last = response.json()["results"]
    assert first["prediction"]["class"] == "red" and last["prediction"]["class"] == "blue"
    assert bad["filename"] == name and bad["prediction"] is None
    alone = assert_problem(client.post("/predict", files={"file": (name, data)}), status)
    assert bad["problem"] == alone  # type, title, status and detail: the same words as /predict's


def test_every_file_bad_is_still_a_200_with_a_problem_each(client):
    response = batch(client, [(name, data) for name, data, _ in BAD_FILES])
    assert response.status_code == 200
    assert [r["problem"]["status"] for r in response.json()["results"]] == [s for *_, s in BAD_FILES]


def test_up_to_max_batch_files_and_not_one_more(client):
    files = [(f"{i}.png", png((200, 10, 10))) for i in range(MAX_BATCH_FILES + 1)]
    assert len(batch(client, files[:MAX_BATCH_FILES]).json()["results"]) == MAX_BATCH_FILES
    problem = assert_problem(batch(client, files), 413)
    assert "MAX_BATCH_FILES" in problem["detail"] and f"limit of {MAX_BATCH_FILES}" in problem["detail"]


def test_a_request_over_max_batch_bytes_is_413_naming_that_limit(model_path):
    with serve(model_path, MAX_BATCH_BYTES="100000") as client:
        wait_healthy(client)
        small = batch(client, [("a.png", png_noise(100))])
        big = batch(client, [("a.png", png_noise(100)), ("b.png", png_noise(200))])  # ~30 KB + ~120 KB
    assert small.status_code == 200
    problem = assert_problem(big, 413)
    assert "MAX_BATCH_BYTES" in problem["detail"] and "100,000" in problem["detail"]


def test_the_field_may_be_called_files_but_not_both(client):
    response = batch(client, GOOD[:2], field="files")
    assert [r["prediction"]["class"] for r in response.json()["results"]] == ["red", "blue"]
    both = [("file", ("a.png", png((1, 2, 3)))), ("files", ("b.png", png((1, 2, 3))))]
    assert_problem(client.post("/predict/batch", files=both), 422)


REQUEST_ERRORS = [
    ("no file field", {"files": {"image": ("a.jpg", jpeg((1, 2, 3)), "image/jpeg")}}, 422),
    ("a text value, not a file", {"data": {"file": "not a file"}, "files": {"x": ("x", b"x")}}, 422),
    ("json body", {"json": {"file": "x"}}, 415),
    ("no body", {}, 415),
    ("urlencoded form", {"data": {"file": "x"}}, 415),
]


@pytest.mark.parametrize(("what", "kwargs", "status"), REQUEST_ERRORS, ids=[r[0] for r in REQUEST_ERRORS])
def test_a_request_without_files_fails_whole(client, what, kwargs, status):
    assert_problem(client.post("/predict/batch", **kwargs), status)


def test_top_k_applies_to_every_file_and_out_of_range_fails_the_request(client):
    results = batch(client, GOOD[:2], query="?top_k=1").json()["results"]
    assert [r["prediction"]["all_predictions"].keys() for r in results] == [{"red"}, {"blue"}]
    assert "between 1 and 3" in assert_problem(batch(client, GOOD[:2], query="?top_k=4"), 400)["detail"]


def test_503_while_the_model_is_not_loaded(tmp_path):
    with serve(tmp_path / "missing.onnx") as client:
        response = batch(client, GOOD[:1])
    assert "Retry-After" in response.headers
    assert_problem(response, 503)


def test_openapi_describes_the_batch_endpoint(client):
    operation = client.get("/schema/openapi.json").json()["paths"]["/predict/batch"]["post"]
    assert operation["summary"] and {"200", "400", "413", "415", "422", "503"} <= set(operation["responses"])
    assert "application/problem+json" in operation["responses"]["413"]["content"]
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["file"]["maxItems"] == MAX_BATCH_FILES


def test_classified_files_are_logged_with_source_batch(model_path, postgres):
    with fresh_database(postgres.url, "batch") as url, serve(model_path, PostgresLog(url)) as client:
        wait_healthy(client)
        results = batch(client, [GOOD[0], ("words.txt", b"just words"), GOOD[1]]).json()["results"]
        ids = [r["prediction"]["prediction_id"] for r in results if r["prediction"]]
        request = {"x-request-id": "req-42"}
        one = client.post("/predict/batch", files=[("file", GOOD[2])], headers=request).json()
        ids.append(one["results"][0]["prediction"]["prediction_id"])
        rows = wait_rows(url, ids)
    assert {row[0]: row[1:] for row in rows} == {
        ids[0]: ("red", "batch", None),
        ids[1]: ("blue", "batch", None),
        ids[2]: ("green", "batch", "req-42"),
    }  # the text file has no row


def wait_rows(url: str, ids: list[str], timeout_s: float = 60) -> list[tuple]:
    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(url) as conn:
            if conn.execute("SELECT to_regclass('predictions')").fetchone()[0] is not None:
                rows = conn.execute(
                    "SELECT id::text, predicted_class, source, request_id FROM predictions",
                ).fetchall()
                if len(rows) >= len(ids):
                    return rows
        assert time.monotonic() < deadline, "the batch's rows were not written"
        time.sleep(0.05)


class ListLog:
    def record(self, row) -> None:
        pass


def test_a_batch_takes_turns_on_the_workers_with_requests_that_come_after_it(model_path):
    """Each image is its own prediction on the shared session (a batch is never alone), and a batch queues at most
    `workers` images: a /predict that arrives while a batch of five runs on one worker is not served last."""
    classified: list[tuple[str, bool]] = []
    running = threading.Event()

    class Slow(Classifier):
        def classify(self, image, alone=True):
            running.set()
            time.sleep(0.05)
            classified.append((tiny_onnx.CLASSES[int(np.argmax(image.mean(axis=(0, 1))))], alone))
            return super().classify(image, alone)

    slot = ModelSlot(Slow(model_path, threads=2), ModelSource(model_path, "x", "tiny", "1", None))
    service = PredictionService(Settings(workers=1), slot, ListLog())
    service.start()

    async def scenario():
        reds = asyncio.create_task(service.predict_batch([png((200, 0, 0))] * 5, RequestContext("batch")))
        assert await asyncio.to_thread(running.wait, 10)  # the batch's first image is on the worker
        await service.predict(png((0, 0, 200)), RequestContext())
        await reds
        first = classified.copy()
        classified.clear()
        await service.predict_batch([png((0, 200, 0))], RequestContext("batch"))
        return first

    try:
        first = asyncio.run(scenario())
    finally:
        service.stop()
    assert [colour for colour, _ in first] == ["red", "blue", "red", "red", "red", "red"]
    assert not any(alone for colour, alone in first if colour == "red")  # never alone: the one-thread session
    assert classified == [("green", True)]  # a batch of one, alone: the session spanning the cores

"""The web UI's API on a real PostgreSQL: a browser's own history, feedback (also while the database is down),
per-version stats, and 503s that say the log is off."""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from litestar.testing import TestClient
from PIL import Image

from function.app import create_app
from function.prediction_log import PostgresLog
from function.settings import Settings
from tests import tiny_onnx
from tests.postgres import fresh_database
from tests.readiness import wait_healthy
from tests.test_function_app import assert_problem

ALICE, BOB = "alice-" + uuid.uuid4().hex, "bob-" + uuid.uuid4().hex


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def database(postgres):
    with fresh_database(postgres.url, "history") as url:
        yield url


@pytest.fixture
def client(model_path, database):
    settings = Settings.from_env(
        {"MODEL_URI": str(model_path), "DATABASE_URL": database, "K_REVISION": "fish-00004"}
    )
    with TestClient(create_app(settings, prediction_log=PostgresLog(database))) as client:
        wait_healthy(client)
        yield client


def predict(client, colour, who: str | None) -> dict:
    headers = {"X-Client-Id": who} if who else {}
    response = client.post("/predict", files={"file": ("a.png", png(colour), "image/png")}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def history(client, who: str, **params) -> dict:
    response = client.get("/predictions", params=params, headers={"X-Client-Id": who})
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_browser_sees_its_own_predictions_newest_first_and_no_one_elses(client):
    mine = [predict(client, colour, ALICE) for colour in [(200, 10, 10), (10, 200, 10), (10, 10, 200)]]
    theirs = predict(client, (200, 10, 10), BOB)
    predict(client, (200, 10, 10), None)  # curl: no client id, in nobody's history
    assert mine[0]["revision"] == "fish-00004"

    wait_for(lambda: len(history(client, ALICE)["predictions"]) == 3, "alice's rows")
    listed = history(client, ALICE)
    assert [p["prediction_id"] for p in listed["predictions"]] == [p["prediction_id"] for p in reversed(mine)]
    first = listed["predictions"][-1]
    assert first["class"] == "red" and first["feedback"] is None and first["revision"] == "fish-00004"
    assert first["all_predictions"] == mine[0]["all_predictions"]
    assert listed["next_before"] is None
    assert [p["prediction_id"] for p in history(client, BOB)["predictions"]] == [theirs["prediction_id"]]

    page = history(client, ALICE, limit=2)
    assert len(page["predictions"]) == 2 and page["next_before"]
    rest = history(client, ALICE, limit=2, before=page["next_before"], before_id=page["next_before_id"])
    assert [p["prediction_id"] for p in rest["predictions"]] == [mine[0]["prediction_id"]]
    assert rest["next_before"] is None and rest["next_before_id"] is None


def test_pages_skip_nothing_when_predictions_share_a_time(client, database):
    """A batch's rows can share a time to the microsecond: the id orders them, and a page may end among them."""
    made = {predict(client, (20 * n, 10, 10), ALICE)["prediction_id"] for n in range(5)}
    wait_for(lambda: len(history(client, ALICE)["predictions"]) == 5, "alice's rows")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "UPDATE predictions SET created_at = '2026-11-28T08:00:00Z' WHERE client_id = %s", (ALICE,)
        )
    seen, cursor = [], {}
    while True:
        page = history(client, ALICE, limit=2, **cursor)
        seen += [p["prediction_id"] for p in page["predictions"]]
        if page["next_before"] is None:
            break
        cursor = {"before": page["next_before"], "before_id": page["next_before_id"]}
    assert sorted(seen) == sorted(made) and len(seen) == 5


@pytest.mark.parametrize("headers", [{}, {"X-Client-Id": "short"}, {"X-Client-Id": "no spaces allowed here"}])
def test_a_history_needs_a_client_id(client, headers):
    assert "X-Client-Id" in assert_problem(client.get("/predictions", headers=headers), 400)["detail"]


def test_a_malformed_client_id_on_predict_is_400(client):
    response = client.post("/predict", files={"file": ("a.png", png((1, 2, 3)), "image/png")},
                           headers={"X-Client-Id": "x"})  # fmt: skip
    assert_problem(response, 400)


def feedback(client, prediction_id: str, who: str | None = ALICE, **body):
    headers = {"X-Client-Id": who} if who else {}
    return client.post(f"/predictions/{prediction_id}/feedback", json=body, headers=headers)


def test_feedback_is_stored_shown_and_replaced_by_a_change_of_mind(client, database):
    made = predict(client, (200, 10, 10), ALICE)
    assert feedback(client, made["prediction_id"], correct=True).status_code == 204
    assert feedback(client, made["prediction_id"], correct=False, true_class="green").status_code == 204
    wait_for(lambda: history(client, ALICE)["predictions"], "the row")
    (entry,) = history(client, ALICE)["predictions"]
    assert entry["feedback"]["correct"] is False and entry["feedback"]["true_class"] == "green"
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM feedback").fetchone() == (1,)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"correct": False, "true_class": "shark"}, 422, "no class 'shark'"),
        ({"correct": False}, 422, "true_class"),
        ({"correct": "yes"}, 400, ""),
        ({"right": True}, 400, ""),
    ],
)
def test_feedback_that_cannot_be_understood_is_refused(client, body, status, words):
    made = predict(client, (200, 10, 10), ALICE)
    problem = assert_problem(feedback(client, made["prediction_id"], **body), status)
    assert words in problem["detail"]


def test_feedback_on_an_id_never_issued_is_404(client):
    assert_problem(feedback(client, str(uuid.uuid4()), correct=True), 404)


def test_feedback_on_a_prediction_made_by_another_instance_is_checked_in_the_database(
    model_path, database, client
):
    made = predict(client, (200, 10, 10), ALICE)
    by_curl = predict(client, (10, 200, 10), None)
    wait_for(lambda: history(client, ALICE)["predictions"], "the row")  # the table exists from here on

    def rows_written() -> bool:
        with psycopg.connect(database) as conn:
            return conn.execute("SELECT count(*) FROM predictions").fetchone() == (2,)

    wait_for(rows_written, "both rows")
    settings = Settings.from_env({"MODEL_URI": str(model_path), "DATABASE_URL": database})
    with TestClient(create_app(settings, prediction_log=PostgresLog(database))) as other:
        wait_healthy(other)
        assert_problem(feedback(other, made["prediction_id"], BOB, correct=True), 404)
        assert feedback(other, made["prediction_id"], correct=True).status_code == 204
        assert feedback(other, by_curl["prediction_id"], BOB, correct=True).status_code == 204


def test_feedback_on_another_browsers_prediction_is_404_as_if_never_made(client):
    """Only the browser that asked may say whether its answer was right; a prediction made without a client id
    (curl) takes feedback from whoever holds its id. This instance made both: its own memory decides."""
    mine, by_curl = predict(client, (200, 10, 10), ALICE), predict(client, (10, 200, 10), None)
    unknown = str(uuid.uuid4())
    never = assert_problem(feedback(client, unknown, BOB, correct=True), 404)["detail"].replace(unknown, "ID")
    for who in (BOB, None):
        refused = assert_problem(feedback(client, mine["prediction_id"], who, correct=True), 404)
        assert refused["detail"].replace(mine["prediction_id"], "ID") == never
    assert feedback(client, mine["prediction_id"], correct=True).status_code == 204
    assert feedback(client, by_curl["prediction_id"], BOB, correct=True).status_code == 204
    assert (
        feedback(client, by_curl["prediction_id"], None, correct=False, true_class="red").status_code == 204
    )


def test_feedback_given_while_the_database_is_down_is_kept_and_written_after(client, postgres, database):
    with postgres.down():
        made = predict(client, (10, 200, 10), ALICE)  # its row waits in the queue
        assert feedback(client, made["prediction_id"], correct=False, true_class="blue").status_code == 204
        assert_problem(client.get("/predictions", headers={"X-Client-Id": ALICE}), 503)

    def feedback_shown() -> bool:  # 503 until the pool has reconnected
        response = client.get("/predictions", headers={"X-Client-Id": ALICE})
        return response.status_code == 200 and any(p["feedback"] for p in response.json()["predictions"])

    wait_for(feedback_shown, "the feedback, written after the outage", timeout_s=120)
    (entry,) = history(client, ALICE)["predictions"]
    assert entry["prediction_id"] == made["prediction_id"]
    assert entry["feedback"]["true_class"] == "blue"


def test_stats_count_predictions_and_feedback_per_version_and_revision(client):
    made = [predict(client, colour, ALICE) for colour in [(200, 10, 10), (200, 10, 10), (10, 200, 10)]]
    feedback(client, made[0]["prediction_id"], correct=True)
    feedback(client, made[1]["prediction_id"], correct=False, true_class="blue")
    wait_for(lambda: len(history(client, ALICE)["predictions"]) == 3, "the rows")

    (version,) = client.get("/stats").json()["versions"]
    assert version["revision"] == "fish-00004" and version["model_version"] == "local"
    assert version["predictions"] == 3 and version["class_counts"] == {"red": 2, "green": 1}
    assert (version["feedback_count"], version["feedback_correct"], version["accuracy"]) == (2, 1, 0.5)
    assert version["latency_p50_ms"] > 0

    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert client.get("/stats", params={"since": later}).json()["versions"] == []
    assert client.get("/stats", params={"until": later}).json()["versions"][0]["predictions"] == 3


def test_without_a_database_the_three_say_the_log_is_off(model_path):
    with TestClient(create_app(Settings.from_env({"MODEL_URI": str(model_path)}))) as client:
        wait_healthy(client)
        assert client.get("/model_info").json()["prediction_log"] is False
        made = predict(client, (200, 10, 10), ALICE)
        for response in [
            client.get("/predictions", headers={"X-Client-Id": ALICE}),
            client.get("/stats"),
            feedback(client, made["prediction_id"], correct=True),
        ]:
            assert "prediction log is off" in assert_problem(response, 503)["detail"]

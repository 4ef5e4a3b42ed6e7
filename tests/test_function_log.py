"""The prediction log against a real PostgreSQL: rows written, a database stopped mid-burst loses nothing,
a full queue drops and counts, shutdown flushes."""

from __future__ import annotations

import hashlib
import io
import time

import psycopg
import pytest
from litestar.testing import TestClient
from PIL import Image

from function import prediction_log
from function.app import create_app
from function.prediction_log import PostgresLog
from function.settings import Settings
from tests import tiny_onnx
from tests.readiness import wait_healthy


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


def serve(model_path, log: PostgresLog) -> TestClient:
    settings = Settings.from_env({"MODEL_URI": str(model_path), "K_REVISION": "fish-00003"})
    return TestClient(create_app(settings, prediction_log=log))


def predict(client, n: int, colour=(200, 10, 10)) -> list[str]:
    ids = []
    for i in range(n):
        response = client.post(
            "/predict", files={"file": ("a.png", png((colour[0], i % 50, 10)), "image/png")}
        )
        assert response.status_code == 200, response.text
        ids.append(response.json()["prediction_id"])
    return ids


def rows(url: str, ids: list[str]) -> list[tuple]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('predictions')").fetchone()[0] is None:
            return []  # the writer creates the table with its first batch
        return conn.execute(
            "SELECT id::text, predicted_class, model_version, revision, image_sha256, probabilities, source "
            "FROM predictions WHERE id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()


# After a database restart the writer's connection pool retries with a doubling back-off (1, 2, 4, 8 s, ...), so its
# first connection can come about as long after the restart as the database was down, and a loaded machine
# stretches both. The waits end as soon as their condition holds: a generous deadline costs nothing.
WAIT_S = 120


def wait_rows(url: str, ids: list[str], timeout_s: float = WAIT_S) -> list[tuple]:
    deadline = time.monotonic() + timeout_s
    while len(found := rows(url, ids)) < len(ids):
        assert time.monotonic() < deadline, f"{len(found)} of {len(ids)} rows written"
        time.sleep(0.1)
    return found


def wait_until(condition, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_every_prediction_becomes_a_row(model_path, postgres):
    with serve(model_path, PostgresLog(postgres.url)) as client:
        wait_healthy(client)
        ids = predict(client, 20)
        found = wait_rows(postgres.url, ids)
    assert {r[0] for r in found} == set(ids)
    _, predicted, version, revision, digest, probabilities, source = found[0]
    assert predicted == "red" and version == "local" and revision == "fish-00003" and source == "http"
    assert len(digest) == 64 and set(probabilities) == set(tiny_onnx.CLASSES)
    first_image = hashlib.sha256(png((200, 0, 10))).hexdigest()
    assert first_image in {r[4] for r in found}


def test_database_stopped_during_a_burst_loses_nothing(model_path, postgres):
    failures_before = prediction_log.WRITE_FAILURES._value.get()
    with serve(model_path, PostgresLog(postgres.url)) as client:
        wait_healthy(client)
        ids = predict(client, 5)
        wait_rows(postgres.url, ids)
        postgres.stop()
        try:
            started = time.monotonic()
            ids += predict(client, 60)  # every one answered while the database is down
            burst_seconds = time.monotonic() - started
            wait_until(
                lambda: prediction_log.WRITE_FAILURES._value.get() > failures_before,
                "the writer to fail a write while the database is down",
            )
            assert "prediction_log_queue_depth" in client.get("/metrics").text
        finally:
            postgres.start()
        found = wait_rows(postgres.url, ids)
    assert len(found) == len(ids) == 65
    assert burst_seconds < 30  # predictions never waited on the database's connect timeout


def test_full_queue_drops_and_counts(model_path, postgres):
    dropped_before = prediction_log.DROPPED._value.get()
    postgres.stop()
    try:
        with serve(model_path, PostgresLog(postgres.url, capacity=5)) as client:
            wait_healthy(client)
            predict(client, 12)
            assert prediction_log.DROPPED._value.get() - dropped_before >= 6
            assert "prediction_log_dropped_total" in client.get("/metrics").text
    finally:
        postgres.start()


def test_shutdown_flushes_the_queue(model_path, postgres):
    """Rows queued while the database was down are written during shutdown, not lost with the process."""
    with serve(model_path, PostgresLog(postgres.url)) as client:
        wait_healthy(client)
        postgres.stop()
        try:
            ids = predict(client, 30)
            assert rows_unreachable(postgres.url)
        finally:
            postgres.start()
    assert len(rows(postgres.url, ids)) == 30  # the app has shut down; every row is already there


def rows_unreachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=1).close()
    except psycopg.OperationalError:
        return True
    return False


def test_a_batch_retried_after_its_commit_is_written_once(postgres):
    """The writer retries a batch whose commit answer was lost: the retry must neither fail nor duplicate."""
    import asyncio
    import uuid
    from datetime import UTC, datetime

    batch = [
        prediction_log.Row(
            id=uuid.uuid4(),
            created_at=datetime.now(UTC),
            image_sha256="ab" * 32,
            predicted_class="red",
            confidence=0.9,
            probabilities={"red": 0.9, "green": 0.1},
            model_name="m",
            model_version="1",
            revision=None,
            latency_ms=1.5,
            source="http",
            request_id=None,
        )  # fmt: skip
        for _ in range(3)
    ]
    fresh = prediction_log.Row(**{**batch[0].__dict__, "id": uuid.uuid4()})

    async def write_twice():
        log = PostgresLog(postgres.url)
        await log._open_pool()
        try:
            await log._migrate()
            await log._insert(batch)
            await log._insert([*batch, fresh])  # the retry, now with one row the first attempt did not have
        finally:
            await log._pool.close()

    asyncio.run(write_twice())
    ids = [str(row.id) for row in [*batch, fresh]]
    found = rows(postgres.url, ids)
    assert sorted(r[0] for r in found) == sorted(ids)
    assert found[0][5] == {"red": 0.9, "green": 0.1}  # JSONB, not a JSON string

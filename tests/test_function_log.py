"""The prediction log against a real PostgreSQL: rows written, a database stopped mid-burst loses nothing, a full
queue drops and counts, shutdown flushes, a row the database refuses is set aside without holding up the others,
migrations, and the reads. Each test has a database of its own on the session's server."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import logging
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from litestar.testing import TestClient
from PIL import Image
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from function.app import create_app
from function.prediction_log import (
    LogDisabled,
    LogUnavailable,
    NullLog,
    PostgresLog,
    Row,
    VersionStats,
    schema,
)
from function.prediction_log.schema import PREDICTIONS
from function.settings import Settings
from tests import tiny_onnx
from tests.postgres import fresh_database
from tests.readiness import wait_healthy

# After a database restart the writer's connection pool retries with a doubling back-off (1, 2, 4, 8 s, ...), so its
# first connection can come about as long after the restart as the database was down, and a loaded machine
# stretches both. The waits end as soon as their condition holds: a generous deadline costs nothing.
WAIT_S = 120
# The writer must get past a refused row on its own, without the database changing: well within this.
UNSTALLED_S = 30

# The table as the first version of the function created it, before schema_migrations existed.
FIRST_VERSION_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    image_sha256 text NOT NULL,
    predicted_class text NOT NULL,
    confidence real NOT NULL,
    probabilities jsonb NOT NULL,
    model_name text NOT NULL,
    model_version text NOT NULL,
    revision text,
    latency_ms real NOT NULL,
    source text NOT NULL,
    request_id text
);
CREATE INDEX IF NOT EXISTS predictions_created_at ON predictions (created_at);
"""
FIRST_VERSION_INSERT = "INSERT INTO predictions VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


@pytest.fixture
def database(postgres):
    """The URL of a new, empty database on the session's server, dropped after the test."""
    with fresh_database(postgres.url, "log") as url:
        yield url


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name)


def make_row(**fields) -> Row:
    defaults = dict(
        id=uuid.uuid4(), created_at=datetime.now(UTC), image_sha256="ab" * 32, predicted_class="red",
        confidence=0.9, probabilities={"red": 0.9, "green": 0.1}, model_name="m", model_version="1",
        revision=None, latency_ms=1.5, source="http", request_id=None,
    )  # fmt: skip
    return Row(**{**defaults, **fields})


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(buffer, "PNG")
    return buffer.getvalue()


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


async def opened(log: PostgresLog) -> None:
    """The log's pool open and its schema migrated, as its first row or read would leave them."""
    await log._database.ready()


def newest(url: str, limit: int = 50) -> list[dict]:
    """The newest rows, newest first, each a dict of the row's fields (probabilities a dict)."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        query = "SELECT * FROM predictions ORDER BY created_at DESC, id DESC LIMIT %s"
        return conn.execute(query, (limit,)).fetchall()


def rows(url: str, ids: list) -> list[tuple]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('predictions')").fetchone()[0] is None:
            return []  # the writer creates the table with its first batch
        return conn.execute(
            "SELECT id::text, predicted_class, model_version, revision, image_sha256, probabilities, source "
            "FROM predictions WHERE id = ANY(%s::uuid[])",
            ([str(i) for i in ids],),
        ).fetchall()


def wait_rows(url: str, ids: list, timeout_s: float = WAIT_S) -> list[tuple]:
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


async def eventually(condition, what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `condition` (sync, run off the loop, so the writer keeps running) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_every_prediction_becomes_a_row(model_path, database):
    with serve(model_path, PostgresLog(database)) as client:
        wait_healthy(client)
        ids = predict(client, 20)
        found = wait_rows(database, ids)
    assert {r[0] for r in found} == set(ids)
    _, predicted, version, revision, digest, probabilities, source = found[0]
    assert predicted == "red" and version == "local" and revision == "fish-00003" and source == "http"
    assert len(digest) == 64 and set(probabilities) == set(tiny_onnx.CLASSES)
    first_image = hashlib.sha256(png((200, 0, 10))).hexdigest()
    assert first_image in {r[4] for r in found}


def test_database_stopped_during_a_burst_loses_nothing(model_path, postgres, database):
    failures_before = metric("prediction_log_write_failures_total")
    with serve(model_path, PostgresLog(database)) as client:
        wait_healthy(client)
        ids = predict(client, 5)
        wait_rows(database, ids)
        with postgres.down():
            started = time.monotonic()
            ids += predict(client, 60)  # every one answered while the database is down
            burst_seconds = time.monotonic() - started
            wait_until(
                lambda: metric("prediction_log_write_failures_total") > failures_before,
                "the writer to fail a write while the database is down",
            )
            assert "prediction_log_queue_depth" in client.get("/metrics").text
        found = wait_rows(database, ids)
    assert len(found) == len(ids) == 65
    assert burst_seconds < 30  # predictions never waited on the database's connect timeout


def test_full_queue_drops_and_counts(postgres, database):
    """With the database down, a queue of 5 keeps 5 of 12 rows recorded in one go (the writer has not run between
    them, so it holds none), drops and counts the other 7, and writes the 5 once the database is back."""

    async def scenario():
        log = PostgresLog(database, capacity=5)
        await log.start()
        await asyncio.to_thread(postgres.stop)
        try:
            dropped_before = metric("prediction_log_dropped_total")
            batch = [make_row() for _ in range(12)]
            for row in batch:
                log.record(row)
            assert metric("prediction_log_dropped_total") - dropped_before == 7
            assert metric("prediction_log_queue_depth") == 5
        finally:
            await asyncio.to_thread(postgres.start)
        await eventually(lambda: len(rows(database, [r.id for r in batch])) == 5, "the 5 kept rows")
        await log.stop(5)

    asyncio.run(scenario())


def test_shutdown_flushes_the_queue(model_path, postgres, database):
    """Rows queued while the database was down are written during shutdown, not lost with the process."""
    with serve(model_path, PostgresLog(database)) as client:
        wait_healthy(client)
        with postgres.down():
            ids = predict(client, 30)
            assert rows_unreachable(database)
    assert len(rows(database, ids)) == 30  # the app has shut down; every row is already there


def rows_unreachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=1).close()
    except psycopg.OperationalError:
        return True
    return False


def test_queue_depth_counts_the_rows_in_the_writers_hands(postgres, database):
    """The gauge is every row not yet written: with the database down, the 7 rows the writer holds in its failing
    batch (the queue itself is empty then), and none once they are written."""

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        await opened(log)  # the pool is open and the schema migrated: the writer's next step is the COPY
        await asyncio.to_thread(postgres.stop)
        try:
            failures_before = metric("prediction_log_write_failures_total")
            batch = [make_row() for _ in range(7)]
            for row in batch:
                log.record(row)
            await eventually(
                lambda: metric("prediction_log_write_failures_total") > failures_before, "a failed COPY"
            )
            assert metric("prediction_log_queue_depth") == 7
        finally:
            await asyncio.to_thread(postgres.start)
        await eventually(lambda: metric("prediction_log_queue_depth") == 0, "the rows to be written")
        assert len(rows(database, [r.id for r in batch])) == 7
        await log.stop(5)

    asyncio.run(scenario())


def test_a_batch_retried_after_its_commit_is_written_once(database, caplog):
    """A batch whose commit went through but whose answer was lost is retried: its rows are already there. The
    retry neither fails, nor duplicates, nor sets them aside, and the row the first attempt lacked is written."""
    earlier = [make_row() for _ in range(3)]
    fresh = make_row()

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        await opened(log)  # migrated
        with psycopg.connect(database) as conn:  # what the first attempt committed
            for row in earlier:
                conn.execute(PREDICTIONS.insert_sql, row.values())
        written_before = metric("prediction_log_rows_written_total")
        rejected_before = metric("prediction_log_rows_rejected_total")
        for row in [*earlier, fresh]:
            log.record(row)
        await eventually(lambda: metric("prediction_log_queue_depth") == 0, "the retried batch")
        await log.stop(5)
        assert metric("prediction_log_rows_written_total") - written_before == 4
        assert metric("prediction_log_rows_rejected_total") == rejected_before

    asyncio.run(scenario())
    ids = [str(row.id) for row in [*earlier, fresh]]
    found = rows(database, ids)
    assert sorted(r[0] for r in found) == sorted(
        ids
    )  # each once: id is the primary key, and all four are there
    assert found[0][5] == {"red": 0.9, "green": 0.1}  # JSONB, not a JSON string
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


REFUSALS = {
    "check": (
        "ALTER TABLE predictions ADD CONSTRAINT no_poison CHECK (request_id IS DISTINCT FROM 'poison')",
        "23514",
    ),
    # A second unique key, on a value a row already there has: not the primary key, so not "already written".
    "unique": ("ALTER TABLE predictions ADD CONSTRAINT no_poison UNIQUE (request_id)", "23505"),
}


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_row_is_set_aside_and_the_others_are_written(database, caplog, refusal):
    constraint, sqlstate = REFUSALS[refusal]
    batch = [make_row(request_id="poison" if i == 3 else f"r{i}") for i in range(12)]
    poison, good = batch[3], batch[:3] + batch[4:]
    later = [make_row(request_id=f"later{i}") for i in range(3)]

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        await opened(log)  # migrated: the table is there to constrain
        with psycopg.connect(database) as conn:
            conn.execute(constraint)
            if refusal == "unique":
                conn.execute(PREDICTIONS.insert_sql, make_row(request_id="poison").values())
        written_before = metric("prediction_log_rows_written_total")
        rejected_before = metric("prediction_log_rows_rejected_total")
        for row in batch:
            log.record(row)
        await eventually(
            lambda: len(rows(database, [r.id for r in good])) == 11, "the 11 good rows", UNSTALLED_S
        )
        for row in later:  # the writer is back to its usual batches
            log.record(row)
        await eventually(
            lambda: len(rows(database, [r.id for r in later])) == 3, "the later rows", UNSTALLED_S
        )
        await log.stop(5)
        assert metric("prediction_log_rows_written_total") - written_before == 14
        assert metric("prediction_log_rows_rejected_total") - rejected_before == 1

    asyncio.run(scenario())
    assert rows(database, [poison.id]) == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert f"SQLSTATE {sqlstate}" in errors[0] and "no_poison" in errors[0]  # the reason
    assert str(poison.id) in errors[0] and '"request_id": "poison"' in errors[0]  # the row, to replay it


# Refusals every row gets alike: the table renamed away (a migration gone wrong), a server turned read-only.
DATABASE_WIDE = {
    "table gone": (
        "ALTER TABLE predictions RENAME TO predictions_away",
        "ALTER TABLE predictions_away RENAME TO predictions",
    ),
    "read-only": (
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'read-only' USING ERRCODE = 'read_only_sql_transaction'; END $$; "
        "CREATE TRIGGER read_only BEFORE INSERT ON predictions FOR EACH STATEMENT EXECUTE FUNCTION refuse()",
        "DROP TRIGGER read_only ON predictions",
    ),
}


@pytest.mark.parametrize("fault", DATABASE_WIDE)
def test_a_refusal_every_row_gets_waits_like_an_outage_and_sets_nothing_aside(database, caplog, fault):
    """The writer tells a row the database refuses for its content from a database that refuses every row: these
    rows wait, counted as failed writes and logged, and are written once the database takes rows again."""
    break_it, mend_it = DATABASE_WIDE[fault]
    batch = [make_row() for _ in range(5)]

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        await opened(log)
        with psycopg.connect(database) as conn:
            conn.execute(break_it)
        failures_before = metric("prediction_log_write_failures_total")
        rejected_before = metric("prediction_log_rows_rejected_total")
        for row in batch:
            log.record(row)
        await eventually(
            lambda: metric("prediction_log_write_failures_total") - failures_before >= 3, "retries"
        )
        assert metric("prediction_log_rows_rejected_total") == rejected_before
        assert metric("prediction_log_queue_depth") == 5
        with psycopg.connect(database) as conn:
            conn.execute(mend_it)
        await eventually(
            lambda: len(rows(database, [r.id for r in batch])) == 5, "the waiting rows", UNSTALLED_S
        )
        await log.stop(5)
        assert metric("prediction_log_rows_rejected_total") == rejected_before

    asyncio.run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("retrying" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_reads_that_hang_never_keep_the_writer_from_its_connection(database):
    """Ten reads of /stats stuck behind a lock (each holds a connection until its 2 s deadline, then answers 503)
    while rows are queued: the writer has a connection of its own, so the rows go in meanwhile."""
    batch = [make_row() for _ in range(5)]

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        await opened(log)
        async with await psycopg.AsyncConnection.connect(database) as holder:
            await holder.execute("LOCK TABLE feedback IN ACCESS EXCLUSIVE MODE")  # /stats joins feedback
            reads = [asyncio.create_task(log.stats()) for _ in range(10)]
            await asyncio.sleep(0.3)
            for row in batch:
                log.record(row)
            await eventually(lambda: len(rows(database, [r.id for r in batch])) == 5, "the rows", 1.5)
            assert not any(read.done() for read in reads)  # still waiting: the rows did not wait for them
            answers = await asyncio.gather(*reads, return_exceptions=True)
            await holder.rollback()
        await log.stop(5)
        return answers

    answers = asyncio.run(scenario())
    assert all(isinstance(answer, LogUnavailable) for answer in answers), answers


HOLD = 4242  # an advisory lock key: the trigger below makes the insert of the row "held" wait on it
HOLD_TRIGGER = f"""
CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.request_id = 'held' THEN PERFORM pg_advisory_xact_lock_shared({HOLD}); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER hold BEFORE INSERT ON predictions FOR EACH ROW EXECUTE FUNCTION hold();
"""


def test_a_connection_lost_while_writing_row_by_row_is_retried(database, caplog):
    """A batch goes row by row (it holds a refused row); the connection is killed while it inserts a later row.
    The writer waits and goes on with the rows not yet settled: each good row is written once, the refused one
    is set aside once, the row being written when the connection died is not taken for a refused one."""
    batch = [make_row(request_id={2: "poison", 6: "held"}.get(i, f"r{i}")) for i in range(12)]
    good = [row for row in batch if row.request_id != "poison"]

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        await opened(log)  # migrated
        with psycopg.connect(database) as conn:
            conn.execute(REFUSALS["check"][0])
            conn.execute(HOLD_TRIGGER)
        written_before = metric("prediction_log_rows_written_total")
        rejected_before = metric("prediction_log_rows_rejected_total")
        failures_before = metric("prediction_log_write_failures_total")
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as holder:
            await holder.execute("SELECT pg_advisory_lock(%s)", (HOLD,))
            for row in batch:  # COPY stops at the refused row 2, before it reaches the held row 6
                log.record(row)
            deadline = time.monotonic() + WAIT_S
            while not (waiting := await waiting_for_the_lock(holder, HOLD)):
                assert time.monotonic() < deadline, "the writer to reach the held row"
                await asyncio.sleep(0.05)
            assert len(rows(database, [r.id for r in good])) == 5  # rows 0, 1, 3, 4, 5: committed one by one
            await holder.execute("SELECT pg_terminate_backend(%s)", (waiting[0],))
            await holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD,))
        await eventually(lambda: len(rows(database, [r.id for r in good])) == 11, "the 11 good rows")
        await log.stop(5)
        assert metric("prediction_log_rows_written_total") - written_before == 11
        assert metric("prediction_log_rows_rejected_total") - rejected_before == 1
        assert (
            metric("prediction_log_write_failures_total") - failures_before >= 2
        )  # the COPY, the lost connection

    asyncio.run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and '"request_id": "poison"' in errors[0], errors


def test_migrations_apply_once(database):
    async def scenario():
        async with await psycopg.AsyncConnection.connect(database) as conn:
            first = await schema.migrate(conn)
            second = await schema.migrate(conn)
        return first, second

    first, second = asyncio.run(scenario())
    assert first == list(range(1, len(schema.MIGRATIONS) + 1)) and second == []
    with psycopg.connect(database) as conn:
        ledger = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [v for (v,) in ledger] == first


def test_a_database_made_by_the_first_version_keeps_its_rows(database):
    old = [
        make_row(created_at=datetime.now(UTC) - timedelta(hours=1, seconds=i), request_id=f"old{i}")
        for i in range(2)
    ]
    with psycopg.connect(database) as conn:
        conn.execute(FIRST_VERSION_SCHEMA)
        for row in old:
            conn.execute(FIRST_VERSION_INSERT, row.values()[:12])  # its twelve columns
    new = make_row(request_id="new")

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        log.record(new)
        await eventually(lambda: len(rows(database, [new.id])) == 1, "the new row")
        await log.stop(5)
        return newest(database)

    recent = asyncio.run(scenario())
    assert [r["request_id"] for r in recent] == ["new", "old0", "old1"]
    with psycopg.connect(database) as conn:
        ledger = conn.execute("SELECT version FROM schema_migrations").fetchall()
    assert sorted(v for (v,) in ledger) == list(range(1, len(schema.MIGRATIONS) + 1))


def test_two_instances_starting_together_take_turns_migrating(database):
    """Both instances reach the migration lock while the test holds it (so without the lock they would migrate at
    the same moment); once it is released both work and every migration is recorded once."""

    async def scenario():
        first, second = PostgresLog(database), PostgresLog(database)
        rows_ = [make_row(), make_row()]
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as holder:
            await holder.execute("SELECT pg_advisory_lock(%s)", (schema.MIGRATION_LOCK,))
            for log, row in zip((first, second), rows_, strict=True):  # each writer migrates before its row
                await log.start()
                log.record(row)
            deadline = time.monotonic() + WAIT_S
            while len(await waiting_for_the_lock(holder, schema.MIGRATION_LOCK)) < 2:
                assert time.monotonic() < deadline, "both waiting"
                await asyncio.sleep(0.05)
            await holder.execute("SELECT pg_advisory_unlock(%s)", (schema.MIGRATION_LOCK,))
        await eventually(lambda: len(rows(database, [r.id for r in rows_])) == 2, "a row from each")
        for log in (first, second):
            await log.stop(5)

    asyncio.run(scenario())
    with psycopg.connect(database) as conn:
        ledger = conn.execute("SELECT version, count(*) FROM schema_migrations GROUP BY version").fetchall()
    assert sorted(ledger) == [(v, 1) for v in range(1, len(schema.MIGRATIONS) + 1)]


async def waiting_for_the_lock(conn, key: int) -> list[int]:
    """The backends waiting for advisory lock `key` (a bigint key is split into classid and objid)."""
    cursor = await conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid::bigint = %s "
        "AND objid::bigint = %s AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (key >> 32, key & 0xFFFFFFFF),
    )
    return [pid for (pid,) in await cursor.fetchall()]


def test_stats_over_known_rows(database):
    now = datetime.now(UTC)
    v1 = [
        make_row(model_version="1", revision="fish-00001", predicted_class=cls, confidence=conf, latency_ms=ms,
                 created_at=now - timedelta(seconds=s))
        for s, (cls, conf, ms) in enumerate([("red", 0.5, 10), ("red", 0.75, 20), ("green", 1.0, 30), ("red", 0.25, 40)])
    ]  # fmt: skip
    v2 = [
        make_row(model_version="2", revision=None, predicted_class="blue", confidence=conf, latency_ms=ms,
                 created_at=now - timedelta(seconds=10 + s))
        for s, (conf, ms) in enumerate([(0.5, 5), (1.0, 15)])
    ]  # fmt: skip
    old = make_row(model_version="0", revision="fish-00000", created_at=now - timedelta(hours=2))
    expected_v1 = VersionStats("1", "fish-00001", 4, {"red": 3, "green": 1}, 0.625, 25.0, 38.5)
    expected_v2 = VersionStats("2", None, 2, {"blue": 2}, 0.75, 10.0, 14.5)  # p95: 5 + 0.95 * (15 - 5)
    expected_old = VersionStats("0", "fish-00000", 1, {"red": 1}, pytest.approx(0.9), 1.5, 1.5)

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        for row in [old, *v2, *v1]:
            log.record(row)
        await eventually(lambda: metric("prediction_log_queue_depth") == 0, "the rows to be written")
        try:
            return await log.stats(), await log.stats(now - timedelta(hours=1))
        finally:
            await log.stop(5)

    stats, stats_since = asyncio.run(scenario())
    assert newest(database, 3) == [dataclasses.asdict(row) for row in v1[:3]]  # every field, as written
    assert [r["id"] for r in newest(database)] == [row.id for row in [*v1, *v2, old]]
    assert stats == [expected_old, expected_v1, expected_v2]
    assert stats_since == [expected_v1, expected_v2]


def test_logging_off_warns_once_and_reads_say_so(caplog):
    log = NullLog()

    async def scenario():
        await log.start()
        await log.start()
        log.record(make_row())
        for read in (log.stats(), log.history("a-client-id", 10, None), log.issued(uuid.uuid4())):
            with pytest.raises(LogDisabled):
                await read
        await log.stop(1)

    asyncio.run(scenario())
    assert len([r for r in caplog.records if "DATABASE_URL" in r.getMessage()]) == 1
    assert issubclass(LogDisabled, RuntimeError)


def test_psycopg_is_imported_with_the_first_row_not_before(database):
    """Cold start: building and starting the log imports no psycopg; the first row does."""
    script = f"""
import asyncio, sys, time, uuid
from datetime import UTC, datetime
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from function.prediction_log import PostgresLog, Row
from prometheus_client import REGISTRY

async def main():
    log = PostgresLog({database!r})
    await log.start()
    await asyncio.sleep(0)  # the writer task runs up to its wait for a first row
    assert not [m for m in sys.modules if m.startswith("psycopg")], "imported at start"
    log.record(Row(uuid.uuid4(), datetime.now(UTC), "ab" * 32, "red", 0.9, {{"red": 0.9}}, "m", "1", None, 1.5,
                   "http", None))
    deadline = time.monotonic() + 60
    while REGISTRY.get_sample_value("prediction_log_rows_written_total") < 1:
        assert time.monotonic() < deadline, "row not written"
        await asyncio.sleep(0.05)
    assert "psycopg" in sys.modules
    await log.stop(5)

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_queued_event_row_that_was_logged_meanwhile_is_dropped_as_a_duplicate(database, caplog):
    """An event classified while PostgreSQL was away goes through the queue; if its redelivery was logged first,
    the queued row is a duplicate: not written, not set aside as refused, counted."""
    logged = make_row(source="event", event_source="/camera", event_id="e1")
    queued = make_row(source="event", event_source="/camera", event_id="e1")
    other = make_row(source="event", event_source="/camera", event_id="e2")

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        assert await log.record_once(logged) == logged
        duplicates = metric("prediction_log_duplicate_events_total") or 0
        rejected = metric("prediction_log_rows_rejected_total") or 0
        log.record(queued)
        log.record(other)
        await eventually(lambda: metric("prediction_log_queue_depth") == 0, "the queued rows")
        assert (await log.record_once(queued)).id == logged.id  # and a delivery now is answered from the log
        await log.stop(5)
        assert metric("prediction_log_duplicate_events_total") == duplicates + 1
        assert (metric("prediction_log_rows_rejected_total") or 0) == rejected

    asyncio.run(scenario())
    written = sorted(r[0] for r in rows(database, [logged.id, queued.id, other.id]))
    assert written == sorted([str(logged.id), str(other.id)])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_event_row_is_queued_when_the_database_is_out_of_reach(postgres, database):
    row = make_row(source="event", event_source="/camera", event_id="down")

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        await opened(log)  # migrated
        with postgres.down():
            started = time.monotonic()
            assert await log.record_once(row) == row  # answered, not failed
            assert time.monotonic() - started < 10
            assert metric("prediction_log_queue_depth") >= 1
        await eventually(lambda: len(rows(database, [row.id])) == 1, "the queued event row")
        await log.stop(5)

    asyncio.run(scenario())


def test_events_written_together_settle_each_event_on_one_row(database):
    """Deliveries that finish while a write is in flight are written in one statement, the same event twice
    among them included: every caller gets its event's one row."""
    first, again = (make_row(source="event", event_source="/camera", event_id="same") for _ in range(2))
    others = [make_row(source="event", event_source="/camera", event_id=f"other{i}") for i in range(5)]

    async def scenario():
        log = PostgresLog(database)
        await log.start()
        await opened(log)  # migrated
        answers = await asyncio.gather(*(log.record_once(row) for row in [first, again, *others]))
        await log.stop(5)
        return answers

    answers = asyncio.run(scenario())
    assert answers[0].id == answers[1].id == first.id
    assert [answer.id for answer in answers[2:]] == [row.id for row in others]
    written = rows(database, [first.id, again.id, *[row.id for row in others]])
    assert sorted(r[0] for r in written) == sorted(str(row.id) for row in [first, *others])

"""Faults the function meets in production, on the real process (`python -m function`), a real PostgreSQL and a
registry that misbehaves on purpose:

- PostgreSQL killed (SIGKILL, no shutdown) during a burst, then restarted: no request fails, every answered
  prediction is one row;
- PostgreSQL away for 40 s: the rows of the outage follow its restart within seconds, not at the pool's next
  backed-off try;
- the predictions table locked for seconds: /predict is as fast as before, and the rows follow the lock;
- the model cache truncated, corrupted, or on a full disk: fetched again, or a 503 that names the cause;
- the registry answering 500, a proxy's HTML, nothing, or a never-ending answer: the cached version within a
  bound, or a 503 that names the registry;
- SIGTERM while the model loads, and while requests wait for a worker: out within the grace period, every
  request read is answered and logged.

The waits poll for states and end as soon as they hold; their deadlines are for a loaded machine."""

from __future__ import annotations

import contextlib
import io
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import psycopg
import pytest
from PIL import Image

from function.model.registry import Registry
from function.model.source import fetch
from tests import tiny_onnx
from tests.faults_process import CLEAN_EXIT, Function
from tests.faults_registry import FAULTS, NAME, URI, VERSION, FakeRegistry
from tests.postgres import fresh_database

WAIT_S = 120
# Start to a settled state (the cached version served, or a 503 naming the registry) whatever the registry does:
# function.model.registry bounds a registry answer at 10 s (REST_DEADLINE_S); the rest is a start on a loaded machine.
START_BOUND_S = 40


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def model_bytes(model_path) -> bytes:
    return model_path.read_bytes()


@pytest.fixture
def database(postgres):
    with fresh_database(postgres.url, "faults") as url:
        yield url


def png(shade: int, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, shade % 256, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def predict(http: httpx.Client, url: str, image: bytes) -> httpx.Response:
    return http.post(f"{url}/predict", files={"file": ("a.png", image, "image/png")})


def logged(url: str) -> tuple[int, int, set[str]]:
    """(rows, distinct ids, ids) of the predictions table."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('predictions')").fetchone()[0] is None:
            return 0, 0, set()
        ids = [row[0] for row in conn.execute("SELECT id::text FROM predictions").fetchall()]
    return len(ids), len(set(ids)), set(ids)


def wait_for(condition, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Burst:
    """Clients posting /predict in a loop until stopped: every answer's prediction id, and every failure."""

    def __init__(self, url: str, clients: int = 4):
        self.answered: list[str] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(url, i)) for i in range(clients)]
        for thread in self._threads:
            thread.start()

    def _client(self, url: str, seed: int) -> None:
        with httpx.Client(timeout=60) as http:
            for i in range(seed * 1000, seed * 1000 + 100_000):
                if self._stop.is_set():
                    return
                try:
                    response = predict(http, url, png(i))
                except httpx.TransportError as exc:
                    self.failed.append(repr(exc))
                    continue
                if response.status_code == 200:
                    self.answered.append(response.json()["prediction_id"])
                else:
                    self.failed.append(f"{response.status_code} {response.text}")

    def wait_more(self, count: int, what: str) -> None:
        target = len(self.answered) + count
        wait_for(lambda: len(self.answered) >= target or self.failed, what)
        assert not self.failed, self.failed[:5]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def test_postgres_killed_mid_burst_fails_no_request_and_writes_each_prediction_once(
    model_path, postgres, database, tmp_path
):
    function = Function(tmp_path, MODEL_URI=str(model_path), DATABASE_URL=database)
    try:
        function.wait_serving()
        burst = Burst(function.url)
        try:
            burst.wait_more(40, "answers before the kill")
            wait_for(lambda: logged(database)[0] > 0, "the writer's first rows")
            with postgres.down(kill=True):
                burst.wait_more(60, "answers while PostgreSQL is dead")
                wait_for(
                    lambda: "prediction log: writing" in function.log(),
                    "the writer to meet the dead database",
                )
            burst.wait_more(40, "answers after the restart")
        finally:
            burst.stop()
        assert not burst.failed, burst.failed[:5]
        wait_for(lambda: logged(database)[0] >= len(burst.answered), "every answered prediction's row")
        rows, distinct, ids = logged(database)
        assert rows == distinct == len(burst.answered) and ids == set(burst.answered)
    finally:
        function.close()


OUTAGE_S = 40
# The rows of the outage are in PostgreSQL within this of its restart. With psycopg_pool's own backoff they
# took 21 s (its tries 1, 2, 4 ... 32 s apart); with RECONNECT_GIVE_UP_S, 1.2 s.
RECOVERY_BOUND_S = 12


def test_after_a_long_outage_the_rows_follow_the_restart_within_seconds(
    model_path, postgres, database, tmp_path
):
    function = Function(tmp_path, MODEL_URI=str(model_path), DATABASE_URL=database)
    try:
        function.wait_serving()
        with httpx.Client(timeout=30) as http:
            answered = [predict(http, function.url, png(0)).json()["prediction_id"]]
            wait_for(lambda: logged(database)[0] == 1, "the first row")
            with postgres.down():
                outage_ends = time.monotonic() + OUTAGE_S
                while time.monotonic() < outage_ends:
                    response = predict(http, function.url, png(len(answered)))
                    assert response.status_code == 200, response.text
                    answered.append(response.json()["prediction_id"])
                    time.sleep(0.5)
            back = time.monotonic()
            wait_for(lambda: logged(database)[0] >= len(answered), "the outage's rows")
            settled_s = time.monotonic() - back
        rows, distinct, ids = logged(database)
        assert rows == distinct == len(answered) and ids == set(answered)
        assert settled_s < RECOVERY_BOUND_S, f"the rows came {settled_s:.1f} s after the restart"
    finally:
        function.close()


def timed(
    http: httpx.Client, url: str, count: int | None = None, for_s: float = 0
) -> tuple[list[str], list[float]]:
    """`count` predictions, or as many as `for_s` seconds take, one after another: (ids, seconds each)."""
    ids, seconds, started = [], [], time.monotonic()
    while (count is not None and len(ids) < count) or (count is None and time.monotonic() - started < for_s):
        began = time.perf_counter()
        response = predict(http, url, png(len(ids)))
        seconds.append(time.perf_counter() - began)
        assert response.status_code == 200, response.text
        ids.append(response.json()["prediction_id"])
    return ids, seconds


def test_a_locked_predictions_table_slows_no_prediction_and_its_rows_follow_the_lock(
    model_path, database, tmp_path
):
    lock_s = 6.0
    function = Function(tmp_path, MODEL_URI=str(model_path), DATABASE_URL=database)
    try:
        function.wait_serving()
        with httpx.Client(timeout=60) as http:
            before, free = timed(http, function.url, count=60)
            wait_for(lambda: logged(database)[0] == len(before), "the rows before the lock")
            with psycopg.connect(database) as locker:  # one transaction, open until the block ends
                locker.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
                during, locked = timed(http, function.url, for_s=lock_s)
                waiting = locker.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE '%predictions%'"
                ).fetchone()[0]
                (written_meanwhile,) = locker.execute(
                    "SELECT count(*) FROM predictions WHERE id = ANY(%s::uuid[])", (during,)
                ).fetchone()
        wait_for(lambda: logged(database)[0] == len(before) + len(during), "the rows held up by the lock")
    finally:
        function.close()
    assert waiting >= 1 and written_meanwhile == 0  # the writer was stuck behind the lock all along
    p50_free, p50_locked = statistics.median(free), statistics.median(locked)
    assert p50_locked <= 2 * p50_free + 0.025, (p50_free, p50_locked)
    assert max(locked) <= 3 * max(free) + 1.0, (max(free), max(locked))


def damaged(model: bytes) -> bytes:
    """The same size, one weight changed: onnxruntime loads it and answers wrongly."""
    weight = np.float32(0.2).tobytes()
    assert model.count(weight) >= 1
    return model.replace(weight, np.float32(0.9).tobytes(), 1)


def test_a_truncated_cached_model_is_fetched_again_and_a_corrupt_one_is_named(model_bytes, tmp_path):
    registry = FakeRegistry(model_bytes)
    cache = tmp_path / "cache"
    env = {"MODEL_URI": URI, "MLFLOW_TRACKING_URI": registry.url, "MODEL_CACHE_DIR": str(cache)}
    cached = cache / NAME / VERSION / "model.onnx"
    try:
        first = Function(tmp_path, **env)
        try:
            first.wait_serving()
        finally:
            first.close()
        assert registry.downloads_started == 1 and cached.read_bytes() == model_bytes

        cached.write_bytes(model_bytes[: len(model_bytes) // 2])
        again = Function(tmp_path, **env)
        try:
            info = again.wait_serving()
        finally:
            again.close()
        assert info["version"] == VERSION and not info["served_from_cache"]
        assert registry.downloads_started == 2 and cached.read_bytes() == model_bytes
        assert "cached copy of version 4 of 'fish' is damaged" in again.log()

        cached.write_bytes(damaged(model_bytes))
        registry.fault = "500"
        stuck = Function(tmp_path, **env)
        try:
            reason = stuck.wait_unavailable()
            assert stuck.process.poll() is None  # up, and saying why: no crash loop hiding the cause
        finally:
            stuck.close()
        assert "registry is unreachable" in reason and "damaged" in reason, reason
        assert "damaged" in stuck.log()
    finally:
        registry.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs: a disk that can be filled."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> None:
    with contextlib.suppress(OSError), (folder / "filler").open("wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 4096)


def padded(model_path: Path, folder: Path, size: int) -> bytes:
    """The tiny model with `size` bytes of metadata: a file too big for what is left of a disk."""
    model = onnx.load(model_path)
    model.metadata_props.add(key="padding", value="x" * size)
    onnx.save(model, folder / "padded.onnx")
    return (folder / "padded.onnx").read_bytes()


def test_a_full_cache_disk_serves_what_it_holds_and_names_itself_for_the_rest(
    model_path, small_disk, tmp_path
):
    registry = FakeRegistry(padded(model_path, tmp_path, 200_000))
    try:
        fetch(f"models:/{NAME}/{VERSION}", Registry(registry.url), small_disk)  # an earlier start's download
        fill(small_disk)
        env = {"MLFLOW_TRACKING_URI": registry.url, "MODEL_CACHE_DIR": str(small_disk)}
        holds = Function(tmp_path, MODEL_URI=URI, **env)  # cached; only the alias' pointer is new
        lacks = Function(tmp_path, MODEL_URI=f"models:/{NAME}/5", **env)
        try:
            assert holds.wait_serving()["version"] == VERSION
            reason = lacks.wait_unavailable()
            assert lacks.process.poll() is None
        finally:
            holds.close()
            lacks.close()
    finally:
        registry.close()
    assert f"cannot write the model cache under {small_disk}" in reason and "No space left" in reason, reason
    assert "No space left" in lacks.log()


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failing_registry_bounds_the_start_with_the_cached_version_or_a_reason(
    fault, model_bytes, tmp_path
):
    cache = tmp_path / "cache"
    good = FakeRegistry(model_bytes)
    try:
        fetch(URI, Registry(good.url), cache)  # an earlier start's download
    finally:
        good.close()
    registry = FakeRegistry(model_bytes, fault)
    env = {"MODEL_URI": URI, "MLFLOW_TRACKING_URI": registry.url}
    started = time.monotonic()
    cached = Function(tmp_path, MODEL_CACHE_DIR=str(cache), **env)
    uncached = Function(tmp_path, MODEL_CACHE_DIR=str(tmp_path / "empty"), **env)
    try:
        info = cached.wait_serving(timeout_s=START_BOUND_S)
        reason = uncached.wait_unavailable(timeout_s=START_BOUND_S)
        settled_s = time.monotonic() - started
    finally:
        cached.close()
        uncached.close()
        registry.close()
    assert info["version"] == VERSION and info["served_from_cache"]
    assert reason.startswith("the MLflow registry is unreachable") and f"no copy of {URI}" in reason, reason
    assert settled_s < START_BOUND_S


def test_sigterm_while_the_model_loads_exits_within_the_grace_period(model_bytes, tmp_path):
    grace_s = 10.0
    registry = FakeRegistry(model_bytes, hold_download=True)
    function = Function(tmp_path, MODEL_URI=URI, MLFLOW_TRACKING_URI=registry.url,
                        MODEL_CACHE_DIR=str(tmp_path / "cache"), SHUTDOWN_GRACE_SECONDS=str(grace_s))  # fmt: skip
    try:
        wait_for(lambda: registry.downloads_started == 1, "the download to start")
        assert function.health() == (503, {"status": "unavailable", "model_loaded": False,
                                           "reason": "the model is still loading"})  # fmt: skip
        sent = time.monotonic()
        code = function.stop(timeout_s=60)
        took_s = time.monotonic() - sent
    finally:
        function.close()
        registry.close()
    assert code in CLEAN_EXIT and "Traceback" not in function.log(), function.log()
    assert took_s < grace_s, took_s


def large_png(shade: int) -> bytes:
    """Slow enough to decode (about 0.3 s) that requests wait for the one worker."""
    y, x, c = np.ogrid[:3000, :3000, :3]
    pixels = ((x * 3 + y * 5 + c * 70 + shade) % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def in_progress(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("http_requests_in_progress{") and 'path="/predict"' in line)  # fmt: skip


def test_sigterm_with_requests_waiting_for_a_worker_answers_and_logs_them_all(model_path, database, tmp_path):
    grace_s, waiting = 20.0, 6
    function = Function(tmp_path, MODEL_URI=str(model_path), DATABASE_URL=database, WORKERS="1",
                        MAX_CONCURRENT_REQUESTS="32", SHUTDOWN_GRACE_SECONDS=str(grace_s))  # fmt: skip
    images = [large_png(i) for i in range(waiting)]
    answers: list[tuple[int, dict, float]] = []

    def client(image: bytes) -> None:
        with httpx.Client(timeout=60) as http:
            response = predict(http, function.url, image)
            answers.append((response.status_code, response.json(), time.monotonic()))

    try:
        function.wait_serving()
        clients = [threading.Thread(target=client, args=(image,)) for image in images]
        for thread in clients:
            thread.start()
        wait_for(lambda: in_progress(function.url) == waiting or answers, "every request to be read")
        assert not answers, "a request was answered before all were queued: make them slower"
        sent = time.monotonic()
        code = function.stop(timeout_s=60)
        took_s = time.monotonic() - sent
        for thread in clients:
            thread.join(timeout=60)
    finally:
        function.close()
    assert code in CLEAN_EXIT, function.log()
    assert took_s < grace_s, took_s
    assert [status for status, _, _ in answers] == [200] * waiting, answers
    assert sum(at > sent for _, _, at in answers) >= waiting // 2  # most were still waiting at SIGTERM
    ids = {body["prediction_id"] for _, body, _ in answers}
    rows, distinct, logged_ids = logged(database)
    assert rows == distinct == waiting and logged_ids == ids

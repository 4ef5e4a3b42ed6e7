"""The quality loop end to end with real parts: two versions registered in a real `mlflow server` (one right, one
with two classes swapped, so they disagree on a third of the images), the function serving one with the other as
its shadow, a real PostgreSQL log, feedback through the real API, /stats, and `fish-rollout` deciding in its own
process: promote when the candidate is right more often, rollback when it is worse, hold on too few labels."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image

from function import metrics
from function.app import create_app
from function.inference.shadow import Shadow
from function.model.slot import ModelSlot
from function.settings import Settings
from tests import tiny_onnx
from tests.postgres import fresh_database, write_rows
from tests.readiness import wait_healthy

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
SWAPPED = ["green", "red", "blue"]  # red images called green and green ones red: right on blue alone


@pytest.fixture(scope="module")
def versions(tracking_uri, tmp_path_factory):
    """(name, the right version, the swapped one) in the registry; aliases set by each test."""
    import mlflow
    import onnx

    mlflow.set_tracking_uri(tracking_uri)
    folder = tmp_path_factory.mktemp("shadow-models")
    name = "shadow-loop"
    numbers = []
    for label, classes in (("right", tiny_onnx.CLASSES), ("swapped", SWAPPED)):
        model = onnx.load(tiny_onnx.build(folder / f"{label}.onnx", class_names=classes))
        with mlflow.start_run():
            logged = mlflow.onnx.log_model(model, name="model", registered_model_name=name)
        numbers.append(str(logged.registered_model_version))
    return name, *numbers


@pytest.fixture
def database(postgres):
    with fresh_database(postgres.url, "shadow") as url:
        yield url


def set_aliases(tracking_uri: str, name: str, served: str, candidate: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    client.set_registered_model_alias(name, "onnx", served)
    client.set_registered_model_alias(name, "candidate", candidate)


def environment(tracking_uri: str, name: str, database: str, tmp_path) -> dict[str, str]:
    return {"MODEL_URI": f"models:/{name}@onnx", "SHADOW_MODEL_URI": f"models:/{name}@candidate",
            "MLFLOW_TRACKING_URI": tracking_uri, "DATABASE_URL": database, "MODEL_CACHE_DIR": str(tmp_path),
            "SHADOW_SAMPLE": "1"}  # fmt: skip


@contextmanager
def function(env: dict[str, str]):
    with TestClient(create_app(Settings.from_env(env))) as client:
        wait_healthy(client)
        deadline = time.monotonic() + 60
        while not (shadow := client.get("/model_info").json()["shadow"])["loaded"]:
            assert shadow["error"] is None and time.monotonic() < deadline, shadow
            time.sleep(0.02)
        yield client


def photo(colour: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(COLOURS[colour]) + rng.integers(-20, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def classify_and_label(client, count: int, feedback: bool = True) -> None:
    """`count` photos, a third of each colour, each answered and (if `feedback`) labelled with its true colour."""
    headers = {"X-Client-Id": "a-tester-0123456789"}
    for i in range(count):
        colour = list(COLOURS)[i % 3]
        answer = client.post(
            "/predict", files={"file": ("p.png", photo(colour, i), "image/png")}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        if feedback:
            said = answer.json()
            body = {
                "correct": said["class"] == colour,
                "true_class": None if said["class"] == colour else colour,
            }
            given = client.post(f"/predictions/{said['prediction_id']}/feedback", json=body, headers=headers)
            assert given.status_code in (200, 201, 204), given.text


def shadow_stats(client, labelled: int) -> dict:
    """/stats' shadow block once the log holds `labelled` labelled pairs (the writers work off the request path)."""
    deadline = time.monotonic() + 30
    while True:
        stats = client.get("/stats").json()
        if stats["shadow"] and stats["shadow"][0]["labelled"] >= labelled:
            return stats["shadow"][0]
        assert time.monotonic() < deadline, stats
        time.sleep(0.1)


def rollout(env: dict[str, str], *args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "function.quality", "--json", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_better_candidate_is_promoted_and_its_alias_moved(versions, tracking_uri, database, tmp_path):
    name, right, swapped = versions
    set_aliases(tracking_uri, name, served=swapped, candidate=right)
    env = environment(tracking_uri, name, database, tmp_path)
    with function(env) as client:
        info = client.get("/model_info").json()
        assert (
            info["version"] == swapped
            and info["shadow"]["version"] == right
            and info["shadow"]["sample"] == 1
        )
        classify_and_label(client, 120)
        shadow = shadow_stats(client, 100)
    # The shadow saw what the served model saw: right on every photo, the served one on the blue third only.
    assert shadow["served_version"] == swapped and shadow["shadow_version"] == right
    assert shadow["conclusive"] and "more accurate" in shadow["summary"]
    assert shadow["shadow_accuracy"]["value"] == 1.0 and 0.3 < shadow["served_accuracy"]["value"] < 0.37
    assert 0.3 < shadow["agreement"] < 0.37
    assert shadow["accuracy_difference"]["low"] > 0.5
    assert {(d["served_class"], d["shadow_class"]) for d in shadow["disagreements"]} == {
        ("green", "red"), ("red", "green")}  # fmt: skip
    assert sum(shadow["shadow_confidence_bins"]) == shadow["predictions"]

    code, decision = rollout(env)
    assert (code, decision["decision"]) == (0, "promote"), decision
    assert decision["labelled_pairs"] >= 100 and decision["agreement"] < 0.4
    # Drift is evidence beside the decision: the served version's first day is today, so no recent window yet
    drift = [
        (d["model_version"], d["reference_predictions"], d["recent_predictions"]) for d in decision["drift"]
    ]
    assert drift == [(swapped, 120, 0)] and "needs 50 predictions" in decision["drift"][0]["note"]
    assert decision["applied"].startswith("would move")
    code, decision = rollout(env, "--apply")
    assert code == 0 and decision["applied"].startswith("moved"), decision
    from mlflow import MlflowClient

    assert MlflowClient(tracking_uri).get_model_version_by_alias(name, "onnx").version == right


def test_a_worse_candidate_is_held_on_few_labels_then_rolled_back(versions, tracking_uri, database, tmp_path):
    name, right, swapped = versions
    set_aliases(tracking_uri, name, served=right, candidate=swapped)
    env = environment(tracking_uri, name, database, tmp_path)
    with function(env) as client:
        classify_and_label(client, 30)
        shadow_stats(client, 30)
        code, decision = rollout(env)
        assert (code, decision["decision"]) == (10, "hold"), decision
        assert "too few labelled" in decision["reason"] and decision["labelled_pairs"] == 30
        # Agreement is low and known without any label, but it never decides alone
        classify_and_label(client, 90)
        shadow_stats(client, 100)
    code, decision = rollout(env)
    assert (code, decision["decision"]) == (11, "rollback"), decision
    assert decision["difference"]["high"] < 0
    table = subprocess.run([sys.executable, "-m", "function.quality"], capture_output=True, text=True,
                           env={**os.environ, **env})  # fmt: skip
    assert table.returncode == 11 and "ROLLBACK: version" in table.stdout and "agreement" in table.stdout


def test_the_rollout_cli_says_what_is_missing_in_one_line(
    versions, tracking_uri, database, dead_url, tmp_path
):
    name, right, swapped = versions
    set_aliases(tracking_uri, name, served=right, candidate=swapped)
    env = environment(tracking_uri, name, database, tmp_path)
    code, answer = rollout({**env, "DATABASE_URL": ""})
    assert code == 2 and "DATABASE_URL" in answer["error"]
    code, answer = rollout({**env, "MLFLOW_TRACKING_URI": dead_url})
    assert code == 3 and "--stable" in answer["error"]
    code, answer = rollout(env)  # a database the function never wrote to
    assert code == 3 and "start the function once" in answer["error"]


class _Blocking:
    """A classifier whose runs wait for the test: the shadow's queue fills."""

    def __init__(self, real):
        self.card, self._real, self.release = real.card, real, threading.Event()

    def classify(self, image, alone=True):
        self.release.wait(10)
        return self._real.classify(image, alone)


def skipped(reason: str) -> float:
    return metrics.SHADOW_SKIPPED.labels(reason)._value.get()


def test_the_shadow_never_queues_more_than_one_job_nor_runs_under_load(tmp_path):
    """Offers beyond one running and one waiting, offers while every worker is busy, and offers the sample leaves
    out are counted and dropped: the served answer never waits for the shadow."""
    from function.model.classifier import Classifier
    from function.model.source import ModelSource

    path = tiny_onnx.build(tmp_path / "m.onnx")
    slot = ModelSlot(role="shadow")
    slot.classifier, slot.source = (
        _Blocking(Classifier(path, 1)),
        ModelSource(path, str(path), "m", "local", None),
    )
    rows = []

    class Log:
        def record_shadow(self, row):
            rows.append(row)

    draws = iter([0.0] * 5 + [0.9])
    shadow = Shadow(Settings(shadow_model_uri=str(path), shadow_sample=0.5), slot, Log(), lambda: next(draws))
    from tests.test_function_log import make_row

    asyncio.run(offer_six(shadow, slot, make_row))
    assert len(rows) == 2 and rows[0].model_version == "local"


async def offer_six(shadow: Shadow, slot: ModelSlot, make_row) -> None:
    shadow.start()
    pixels = np.zeros((8, 8, 3), np.uint8)
    before = {reason: skipped(reason) for reason in ("busy", "load", "sampled_out")}
    shadow.offer(make_row(), pixels, None, loaded=False)  # runs (and blocks)
    shadow.offer(make_row(), pixels, None, loaded=False)  # waits
    shadow.offer(make_row(), pixels, None, loaded=False)  # busy
    shadow.offer(make_row(), pixels, None, loaded=False)  # busy
    shadow.offer(make_row(), pixels, None, loaded=True)  # load
    shadow.offer(make_row(), pixels, None, loaded=False)  # drawn 0.9 >= 0.5: sampled out
    assert {reason: skipped(reason) - before[reason] for reason in before} == {"busy": 2, "load": 1,
                                                                              "sampled_out": 1}  # fmt: skip
    slot.classifier.release.set()
    await shadow.stop()


def test_drift_flags_a_class_mix_that_shifts_and_not_one_that_holds(database, tmp_path):
    """Two versions logged three days ago (their reference day) and in the last hour: one predicts the same
    mix now, the other far more blue. /stats' drift says stable for the first, act for the second."""
    from datetime import UTC, datetime, timedelta

    from tests.test_function_log import make_row

    then, now = datetime.now(UTC) - timedelta(days=3), datetime.now(UTC) - timedelta(hours=1)
    mixes = {("1", then): (60, 40), ("1", now): (66, 44), ("2", then): (60, 40), ("2", now): (20, 80)}

    write_rows(database, [
        make_row(model_version=version, predicted_class=colour, created_at=at + timedelta(seconds=i))
        for (version, at), (red, blue) in mixes.items()
        for i, colour in enumerate(["red"] * red + ["blue"] * blue)
    ])  # fmt: skip
    model = tiny_onnx.build(tmp_path / "m.onnx")
    with TestClient(
        create_app(Settings.from_env({"MODEL_URI": str(model), "DATABASE_URL": database}))
    ) as client:
        answer = client.get("/stats").json()
        drift = {entry["model_version"]: entry for entry in answer.get("drift", [answer])}
        metrics_text = client.get("/metrics").text
    assert "1" in drift, answer
    assert drift["1"]["level"] == "stable" and drift["1"]["class_mix_psi"] < 0.01
    assert drift["2"]["level"] == "act" and drift["2"]["class_mix_psi"] > 0.25
    assert drift["2"]["reference_predictions"] == 100 and drift["2"]["recent_predictions"] == 100
    assert drift["2"]["confidence_psi"] == 0  # every row here has the same confidence
    assert 'prediction_drift_psi{distribution="class_mix",model_version="2"' in metrics_text


def test_two_revisions_of_an_ab_split_are_compared_and_the_better_one_promoted(database, tmp_path):
    """Two revisions on one log, each answering its own images (an A/B split): /stats compares them (unpaired),
    and `fish-rollout --revisions` promotes the right one and prints the traffic patch it would apply."""
    right = tiny_onnx.build(tmp_path / "right.onnx")
    swapped = tiny_onnx.build(tmp_path / "swapped.onnx", class_names=SWAPPED)
    for model, revision, count in (
        (swapped, "fish-function-model-1", 130),
        (right, "fish-function-model-2", 110),
    ):
        env = {"MODEL_URI": str(model), "DATABASE_URL": database, "K_REVISION": revision}
        with TestClient(create_app(Settings.from_env(env))) as client:
            wait_healthy(client)
            classify_and_label(client, count)
            deadline = time.monotonic() + 30
            while (stats := client.get("/stats").json())["versions"][-1]["feedback_count"] < count:
                assert time.monotonic() < deadline, stats
                time.sleep(0.1)
    (pair,) = stats["revisions"]
    assert (pair["stable_revision"], pair["candidate_revision"]) == (
        "fish-function-model-1",
        "fish-function-model-2",
    )
    assert (
        pair["conclusive"]
        and pair["accuracy_difference"]["low"] > 0.4
        and pair["candidate_accuracy"]["value"] == 1
    )
    code, decision = rollout(
        {"DATABASE_URL": database}, "--revisions", "fish-function-model-1", "fish-function-model-2"
    )
    assert (code, decision["decision"]) == (0, "promote"), decision
    assert (
        decision["kind"] == "revisions"
        and '"revisionName": "fish-function-model-2", "percent": 100' in decision["applied"]
    )
    assert decision["applied"].startswith("would run: kubectl patch ksvc fish-function")
    code, answer = rollout({"DATABASE_URL": database}, "--revisions", "fish-function-model-1", "nope")
    assert code == 2 and "fish-function-model-2" in answer["error"]  # names the revisions it has

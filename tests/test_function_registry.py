"""The function against a real MLflow server: a model converted by fish-convert, downloaded once, cached,
served from the cache when the registry is down, and answering as Keras does."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image

from convert.mlflow_server import free_port
from function.app import create_app
from function.model_source import ModelUnavailable, fetch
from function.settings import Settings
from tests.models import register_keras, small_cnn
from tests.readiness import wait_healthy

CLASSES = ["bream", "mullet", "sprat", "trout"]


@pytest.fixture(scope="module")
def converted(tracking_uri):
    """A Keras model registered as the DAG does, converted by the real CLI; (name, keras model, onnx version)."""
    from convert.cli import main

    name = "function-registry-model"
    keras_model = small_cnn(size=32, classes=4, seed=11)
    register_keras(tracking_uri, name, keras_model, CLASSES)
    assert main(["--tracking-uri", tracking_uri, "--model", name]) == 0
    from mlflow import MlflowClient

    version = MlflowClient(tracking_uri).get_model_version_by_alias(name, "onnx").version
    return name, keras_model, version


def test_registry_model_is_downloaded_once_then_served_from_cache_when_the_registry_is_down(
    converted, tracking_uri, tmp_path
):
    name, _, version = converted
    uri = f"models:/{name}@onnx"

    first = fetch(uri, tracking_uri, tmp_path)
    assert first.version == version and not first.from_cache and first.path.is_file()
    started = time.monotonic()
    again = fetch(uri, tracking_uri, tmp_path)  # cached file reused, alias still checked
    assert again.path == first.path and time.monotonic() - started < 5

    dead = f"http://127.0.0.1:{free_port()}"
    offline = fetch(uri, dead, tmp_path)
    assert offline.from_cache and offline.version == version and offline.path == first.path

    with pytest.raises(ModelUnavailable, match="unreachable"):
        fetch(uri, dead, tmp_path / "empty-cache")


def test_pinned_version_and_unknown_alias(converted, tracking_uri, tmp_path):
    name, _, version = converted
    assert fetch(f"models:/{name}/{version}", tracking_uri, tmp_path).version == version
    with pytest.raises(ModelUnavailable, match="nope"):
        fetch(f"models:/{name}@nope", tracking_uri, tmp_path)


def test_served_predictions_match_keras(converted, tracking_uri, tmp_path):
    name, keras_model, version = converted
    settings = Settings.from_env(
        {
            "MODEL_URI": f"models:/{name}@onnx",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MODEL_CACHE_DIR": str(tmp_path),
        }
    )
    images = np.random.default_rng(5).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    want = np.asarray(keras_model(images.astype(np.float32) / 255.0))
    with TestClient(create_app(settings)) as client:
        wait_healthy(client)
        assert client.get("/model_info").json()["version"] == version
        for image, expected in zip(images, want, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "PNG")  # lossless, already at the model's size
            body = client.post("/predict", files={"file": ("x.png", buffer.getvalue(), "image/png")}).json()
            got = np.array([body["all_predictions"][c] for c in CLASSES])
            assert body["class"] == CLASSES[int(expected.argmax())]
            assert np.abs(got - expected).max() <= 1e-4


def test_artifacts_on_a_shared_filesystem_are_copied_and_unproxied_stores_need_the_client(
    tmp_path, monkeypatch
):
    """Registries that do not proxy artifacts: file:// is read directly; s3:// and friends need the optional
    MLflow client, and without it the message says what to do."""
    from function import model_source

    store = tmp_path / "store"
    store.mkdir()
    (store / "model.onnx").write_bytes(b"onnx bytes")
    (store / "MLmodel").write_text("flavors: {}")
    work = tmp_path / "work"
    work.mkdir()
    copied = model_source._fetch_onnx(None, store.as_uri(), work, "version 1 of 'm'")
    assert copied.read_bytes() == b"onnx bytes" and copied.parent == work

    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)  # as in the slim image: not installed
    with pytest.raises(ModelUnavailable, match="does not proxy.*registry-client"):
        model_source._fetch_onnx(None, "s3://bucket/models/m-1/artifacts", work, "version 1 of 'm'")


def test_registry_credentials_follow_mlflow_variables(monkeypatch):
    from function.model_source import _auth_headers

    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert _auth_headers() == {}
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
    assert _auth_headers() == {"Authorization": "Basic YW5uOnMzY3JldA=="}
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    assert _auth_headers() == {"Authorization": "Bearer tok"}

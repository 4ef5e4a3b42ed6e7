"""The real architecture once: a MobileNetV2 trained on the demo's synthetic fish, converted to ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from mlflow import MlflowClient

from convert import samples, scaling_gate

pytestmark = pytest.mark.slow


def test_mobilenetv2_converts_with_parity(fish_registry, convert_cli, tmp_path):
    name, keras_version, samples_dir = fish_registry

    code, doc, _ = convert_cli("--model", name)

    assert code == 0, doc
    (fp32,) = doc["results"]
    assert fp32["status"] == "registered" and fp32["figures"]["parity_images"] == 360  # the run's samples
    assert fp32["figures"]["parity_max_abs_diff"] <= 1e-4 and fp32["figures"]["parity_top1_agreement"] == 1.0
    # The run names its preprocessing, and its samples lie in species folders: the scaling is checked on them.
    assert fp32["figures"]["input_scaling_origin"] == "run param preprocessing"
    assert fp32["figures"]["sample_labelled_images"] == 360
    assert fp32["figures"]["sample_top1_accuracy"] > scaling_gate.chance_ceiling(9, 360)
    client = MlflowClient(mlflow.get_tracking_uri())
    assert client.get_model_version_by_alias(name, "onnx").version == fp32["version"]
    assert client.get_model_version(name, keras_version).tags["onnx_model_version"] == fp32["version"]

    # The registered fp32 file alone, fed JPEG samples decoded to uint8, matches Keras.
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@onnx", dst_path=str(tmp_path)))
    (path,) = local.rglob("*.onnx")
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    session = ort.InferenceSession(str(path))
    height, width = session.get_inputs()[0].shape[1:3]
    images = samples.load(samples.image_files(samples_dir)[::7], (height, width))
    keras_model = mlflow.keras.load_model(f"models:/{name}/{keras_version}")
    want = np.asarray(keras_model(images.astype(np.float32) / 255.0))
    got = session.run(None, {"image": images})[0]
    assert np.abs(got - want).max() <= 1e-4 and (got.argmax(1) == want.argmax(1)).all()
    assert len(json.loads(meta["class_names"])) == 9 and meta["source_version"] == keras_version


def test_function_serves_the_converted_mobilenetv2_as_keras_predicts(fish_registry, tracking_uri, tmp_path):
    """The served ONNX model and the Keras model agree on the run's sample photos (same class, |Δp| <= 1e-4)."""
    from litestar.testing import TestClient

    from convert.cli import main
    from function.app import create_app
    from function.settings import Settings
    from tests.readiness import wait_healthy

    name, keras_version, samples_dir = fish_registry
    # Idempotent: converts only if the test above did not run. Not through capsys: Litestar's log handler
    # would outlive the captured stream it was given.
    assert main(["--tracking-uri", tracking_uri, "--model", name]) == 0
    files = samples.image_files(samples_dir)[::40]
    keras_model = mlflow.keras.load_model(f"models:/{name}/{keras_version}")
    settings = Settings.from_env(
        {
            "MODEL_URI": f"models:/{name}@onnx",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MODEL_CACHE_DIR": str(tmp_path),
        }
    )
    with TestClient(create_app(settings)) as client:
        wait_healthy(client)
        classes = client.get("/model_info").json()["classes"]
        size = tuple(client.get("/model_info").json()["input_size"])
        want = np.asarray(keras_model(samples.load(files, size).astype(np.float32) / 255.0))
        for path, expected in zip(files, want, strict=True):
            body = client.post(
                "/predict", files={"file": (path.name, path.read_bytes(), "image/jpeg")}
            ).json()
            got = np.array([body["all_predictions"][c] for c in classes])
            assert body["class"] == classes[int(expected.argmax())]
            assert np.abs(got - expected).max() <= 1e-4

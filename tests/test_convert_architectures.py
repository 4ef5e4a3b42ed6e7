"""fish-convert on the models data teams actually train: keras.applications architectures and the habits of real
model code (augmentation, Lambda, custom layers, mixed precision, any-size and grayscale inputs), each registered
as the DAG does, converted by the real CLI in its own process (as the DAG runs it, so its peak memory is its own),
checked for parity, and served by the function against the team's own Keras pipeline.

Weights are random (no hub here) and inputs small, so the suite stays fast; the graphs are the real ones."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.models import register_keras

pytestmark = pytest.mark.slow

CLASSES = ["bream", "mullet", "sprat", "trout", "perch"]
# A DAG worker's budget: a plain fp32 conversion of any model here must fit in it (issue 17).
PEAK_RSS_LIMIT_MB = 3 * 1024


def convert(tracking_uri: str, *args: str) -> tuple[int, dict, str, float]:
    """The console entry point in a process of its own: (exit code, its one JSON document, stderr, seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "convert", "--tracking-uri", tracking_uri, "--json", *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr, time.monotonic() - started


def photos(n: int, size: int, seed: int = 0) -> np.ndarray:
    from convert.samples import generated

    return generated(n, (size, size), seed=seed)


def served_probabilities(
    tracking_uri: str, name: str, images: np.ndarray, tmp_path, info: dict | None = None
):
    """POST each image as a PNG to the function serving models:/NAME@onnx; probabilities in class order.
    `info`, if given, receives the function's /model_info."""
    import io

    from litestar.testing import TestClient
    from PIL import Image

    from function.app import create_app
    from function.settings import Settings
    from tests.readiness import wait_healthy

    settings = Settings.from_env(
        {
            "MODEL_URI": f"models:/{name}@onnx",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MODEL_CACHE_DIR": str(tmp_path),
        }
    )
    rows = []
    with TestClient(create_app(settings)) as client:
        wait_healthy(client)
        model_info = client.get("/model_info").json()
        (info if info is not None else {}).update(model_info)
        classes = model_info["classes"]
        for image in images:
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            answer = client.post("/predict", files={"file": ("x.png", png.getvalue(), "image/png")})
            assert answer.status_code == 200, answer.text
            rows.append([answer.json()["all_predictions"][c] for c in classes])
    return np.array(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """The note's table: one row per model, written beside pytest's temporary files."""
    rows: list[str] = []
    yield rows
    path = tmp_path_factory.getbasetemp() / "architectures.md"
    header = "| model | converts | parity max abs diff | served vs Keras | peak RSS MB | seconds |\n|---|---|---|---|---|---|\n"
    path.write_text(header + "\n".join(rows) + "\n")
    print(f"\n{path}:\n{path.read_text()}")


def keras_application(name: str, size: int, pipeline: str | None = None):
    """A keras.applications model with random weights whose BatchNorm statistics are those of real input, as
    a trained model's are: with the initial ones, activations fade to ~1e-11 through a deep random network and
    every image gets the same probabilities, which would make 'served matches Keras' true of anything."""
    import keras

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=len(CLASSES))
    norms = list(_batch_norms(model))
    for layer in norms:
        layer.momentum = 0.0  # one training-mode pass sets the moving statistics to that batch's
    model(team_pipeline(pipeline)(photos(32, size, seed=11).astype(np.float32)), training=True)
    for layer in norms:
        layer.momentum = 0.99
    return model


def _batch_norms(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer
        yield from _batch_norms(layer) if hasattr(layer, "layers") else ()


def small_model(input_shape: tuple, *front):
    """The model code teams write around a small head: `front` layers, then a convolution and a classifier."""
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input(input_shape),
        *front,
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(CLASSES), activation="softmax"),
    ])  # fmt: skip


def team_pipeline(module: str | None):
    """How the team feeds the model in training: keras.applications' own preprocess_input, or raw pixels for a
    model that scales itself."""
    import keras

    if module is None:
        return lambda x: x
    return getattr(keras.applications, module).preprocess_input


ARCHITECTURES = [
    # (constructor, input size, preprocess_input module the team's pipeline uses, run param logged)
    ("MobileNetV3Small", 32, None, None),  # its own Rescaling: detected, default becomes 'none'
    ("EfficientNetB0", 32, None, None),  # Rescaling + Normalization inside: constants folded
    ("ResNet50", 32, "resnet50", "caffe"),  # caffe mode in the pipeline, named by the run
    ("DenseNet121", 32, "densenet", "torch"),  # torch mode in the pipeline, named by the run
    ("ConvNeXtTiny", 32, None, None),  # XLA-compiled grouped convolutions and exact GELU (Erfc)
]


@pytest.mark.parametrize(("architecture", "size", "pipeline", "logged"), ARCHITECTURES)
def test_keras_applications_convert_and_serve_as_the_team_trains(
    architecture, size, pipeline, logged, tracking_uri, model_name, table, tmp_path
):
    model = keras_application(architecture, size, pipeline)
    images = photos(12, size)
    params = {"preprocessing": logged} if logged else None
    register_keras(tracking_uri, model_name, model, CLASSES, samples=images, params=params)

    code, doc, err, seconds = convert(tracking_uri, "--model", model_name)

    assert code == 0, err
    (result,) = doc["results"]
    figures = result["figures"]
    assert figures["parity_max_abs_diff"] <= 1e-3 and figures["parity_top1_agreement"] == 1.0
    assert figures["input_scaling_origin"] == (
        "run param preprocessing" if logged else "the model has its own Rescaling/Normalization"
    )
    fresh = photos(6, size, seed=7)
    want = np.asarray(model(team_pipeline(pipeline)(fresh.astype(np.float32))))
    served = served_probabilities(tracking_uri, model_name, fresh, tmp_path)
    served_diff = float(np.abs(served - want).max())
    table.append(_row(f"{architecture} {size}x{size}", doc, served, want, seconds))
    assert served_diff <= 1e-3 and (served.argmax(1) == want.argmax(1)).all()
    assert doc["peak_rss_mb"] <= PEAK_RSS_LIMIT_MB


def test_augmentation_layers_and_own_rescaling(tracking_uri, model_name, table, tmp_path):
    """A Sequential that augments in the model (inactive when serving) and scales raw pixels itself."""
    import keras

    model = small_model(
        (32, 32, 3),
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomRotation(0.1),
        keras.layers.RandomZoom(0.1),
        keras.layers.Rescaling(1 / 255),
    )
    register_keras(tracking_uri, model_name, model, CLASSES, samples=photos(8, 32))

    code, doc, err, seconds = convert(tracking_uri, "--model", model_name)

    assert code == 0, err
    assert doc["results"][0]["figures"]["input_scaling_origin"].startswith("the model has its own")
    fresh = photos(4, 32, seed=3)
    want = np.asarray(model(fresh.astype(np.float32), training=False))
    served = served_probabilities(tracking_uri, model_name, fresh, tmp_path)
    table.append(_row("Sequential + augmentation + Rescaling", doc, served, want, seconds))
    assert np.abs(served - want).max() <= 1e-4


def test_lambda_first_layer_needs_trust(tracking_uri, model_name, table, tmp_path):
    import keras

    model = small_model((32, 32, 3), keras.layers.Lambda(lambda x: x / 127.5 - 1.0))
    register_keras(tracking_uri, model_name, model, CLASSES, samples=photos(8, 32))

    code, doc, _, _ = convert(tracking_uri, "--model", model_name, "--input-scaling", "none")
    assert code == 2 and "Lambda" in doc["error"] and "--trust-lambda" in doc["error"]

    code, doc, err, seconds = convert(
        tracking_uri, "--model", model_name, "--input-scaling", "none", "--trust-lambda"
    )

    assert code == 0, err
    fresh = photos(4, 32, seed=3)
    want = np.asarray(model(fresh.astype(np.float32)))
    served = served_probabilities(tracking_uri, model_name, fresh, tmp_path)
    table.append(_row("Lambda first layer (--trust-lambda)", doc, served, want, seconds))
    assert np.abs(served - want).max() <= 1e-4


CUSTOM_LAYER = """
import keras


@keras.saving.register_keras_serializable(package="fishteam")
class Contrast(keras.layers.Layer):
    def call(self, x):
        return (x - 0.5) * 2.0
"""


def test_custom_layer_is_imported_by_name(tracking_uri, model_name, table, tmp_path):
    import importlib.util

    module_file = tmp_path / "fishteam_layers.py"
    module_file.write_text(CUSTOM_LAYER)
    spec = importlib.util.spec_from_file_location("fishteam_layers", module_file)
    layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layers)
    model = small_model((32, 32, 3), layers.Contrast())
    register_keras(tracking_uri, model_name, model, CLASSES, samples=photos(8, 32))

    code, doc, _, _ = convert(tracking_uri, "--model", model_name)
    assert code == 2 and "'Contrast'" in doc["error"] and "--import" in doc["error"]

    code, doc, err, seconds = convert(tracking_uri, "--model", model_name, "--import", str(module_file))

    assert code == 0, err
    fresh = photos(4, 32, seed=3)
    want = np.asarray(model(fresh.astype(np.float32) / 255))
    served = served_probabilities(tracking_uri, model_name, fresh, tmp_path / "cache")
    table.append(_row("custom layer (--import FILE.py)", doc, served, want, seconds))
    assert np.abs(served - want).max() <= 1e-4


def test_mixed_float16_model_converts_within_a_float16_tolerance(tracking_uri, model_name, table, tmp_path):
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras_application("MobileNetV2", 32, "mobilenet_v2")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    register_keras(tracking_uri, model_name, model, CLASSES, samples=photos(12, 32))

    code, doc, err, seconds = convert(tracking_uri, "--model", model_name, "--input-scaling", "tf")

    assert code == 0, err
    (result,) = doc["results"]
    assert result["precision"] == "fp16" and result["figures"]["parity_tolerance"] == 1e-1
    assert "tolerance 0.1, float16" in err  # the derived tolerance is printed
    from mlflow import MlflowClient

    version = MlflowClient(tracking_uri).get_model_version_by_alias(model_name, "onnx")
    assert version.tags["precision"] == "fp16" and version.tags["compute_dtype"] == "float16"
    fresh = photos(4, 32, seed=3)
    want = np.asarray(model(fresh.astype(np.float32) / 127.5 - 1), dtype=np.float32)
    info: dict = {}
    served = served_probabilities(tracking_uri, model_name, fresh, tmp_path, info)
    assert info["precision"] == "fp16"  # /model_info says what the graph computes in
    table.append(_row("MobileNetV2 under mixed_float16", doc, served, want, seconds))
    code, doc, _, _ = convert(tracking_uri, "--model", model_name, "--quantize", "int8")
    assert code == 2 and "float16" in doc["error"]
    assert np.abs(served - want).max() <= 1e-1
    top_two = np.sort(want, axis=1)[:, -2:]
    decided = (
        top_two[:, 1] - top_two[:, 0] >= 1e-1
    )  # the parity gate's rule: near ties are float16's rounding
    assert (served.argmax(1) == want.argmax(1))[decided].all() and decided.any()


def test_any_size_model_is_served_at_the_size_given(tracking_uri, model_name, table, tmp_path):

    model = small_model((None, None, 3))
    register_keras(tracking_uri, model_name, model, CLASSES)

    code, doc, _, _ = convert(tracking_uri, "--model", model_name)
    assert code == 2 and "--input-size" in doc["error"] and "any size" in doc["error"]

    code, doc, err, seconds = convert(tracking_uri, "--model", model_name, "--input-size", "40x48")

    assert code == 0, err
    fresh = photos(4, 40, seed=3)[:, :, :40]  # square photos: the function resizes them to 40x48
    served = served_probabilities(tracking_uri, model_name, fresh, tmp_path)
    from PIL import Image

    from convert.samples import load

    files = []
    for i, image in enumerate(fresh):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    want = np.asarray(model(load(files, (40, 48)).astype(np.float32) / 255))
    table.append(_row("(None, None, 3) input, --input-size 40x48", doc, served, want, seconds))
    assert np.abs(served - want).max() <= 1e-4


def test_grayscale_model_sees_grayscale(tracking_uri, model_name, table, tmp_path):
    import onnx
    import tensorflow as tf

    model = small_model((32, 32, 1))
    register_keras(tracking_uri, model_name, model, CLASSES, samples=photos(8, 32))

    code, doc, err, seconds = convert(tracking_uri, "--model", model_name)

    assert code == 0, err
    fresh = photos(4, 32, seed=3)
    gray = tf.image.rgb_to_grayscale(fresh)  # what keras' loaders give a color_mode="grayscale" pipeline
    want = np.asarray(model(tf.cast(gray, tf.float32) / 255))
    info: dict = {}
    served = served_probabilities(tracking_uri, model_name, fresh, tmp_path, info)
    assert info["color_mode"] == "grayscale"
    table.append(_row("grayscale (32, 32, 1)", doc, served, want, seconds))
    assert np.abs(served - want).max() <= 1e-4
    import mlflow

    local = Path(
        mlflow.artifacts.download_artifacts(f"models:/{model_name}@onnx", dst_path=str(tmp_path / "m"))
    )
    meta = {p.key: p.value for p in onnx.load(next(local.rglob("*.onnx"))).metadata_props}
    assert meta["color_mode"] == "grayscale"


def test_inputs_that_cannot_be_served_are_one_sentence(tracking_uri, model_name):
    import keras

    first, second = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    joined = keras.layers.Concatenate()([first, second])
    pooled = keras.layers.GlobalAveragePooling2D()(joined)
    model = keras.Model([first, second], keras.layers.Dense(2, activation="softmax")(pooled))
    register_keras(tracking_uri, model_name, model, ["a", "b"])

    code, doc, err, _ = convert(tracking_uri, "--model", model_name)

    assert code == 2 and "only one image input" in doc["error"]


def _row(label: str, doc: dict, served, want, seconds: float) -> str:
    figures = doc["results"][0]["figures"]
    return (
        f"| {label} | yes | {figures['parity_max_abs_diff']:.2g} | {float(np.abs(served - want).max()):.2g} "
        f"| {doc['peak_rss_mb']} | {seconds:.0f} |"
    )

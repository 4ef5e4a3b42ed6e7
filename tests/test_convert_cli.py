"""Integration tests of fish-convert against a real MLflow server, real TensorFlow and real onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from mlflow import MlflowClient

from tests.models import (
    brightness_cnn,
    brightness_images,
    class_indices_file,
    colour_cnn,
    colour_images,
    near_tie_cnn,
    register_keras,
    small_cnn,
)

CLASSES = ["bream", "mullet", "sprat", "trout"]


def rng_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def versions(uri: str, name: str) -> dict[str, dict]:
    client = MlflowClient(uri)
    return {v.version: v.tags for v in client.search_model_versions(f"name='{name}'")}


def registered_onnx(uri: str, name: str, version: str, tmp_path) -> list:
    mlflow.set_tracking_uri(uri)
    local = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp_path))
    return sorted(p for p in Path(local).rglob("*") if p.is_file())


def test_converts_and_the_registered_file_describes_itself(tracking_uri, model_name, convert_cli, tmp_path):
    keras_model = small_cnn(size=32, classes=4)
    source = register_keras(tracking_uri, model_name, keras_model, CLASSES, samples=rng_images(12))

    code, doc, _ = convert_cli("--model", model_name)

    assert code == 0, doc
    (result,) = doc["results"]
    assert result["status"] == "registered" and result["alias"] == "onnx"
    assert result["figures"]["parity_max_abs_diff"] <= 1e-4
    client = MlflowClient(tracking_uri)
    onnx_version = client.get_model_version_by_alias(model_name, "onnx")
    assert onnx_version.version == result["version"] != source
    tags = onnx_version.tags
    assert tags["format"] == "onnx" and tags["precision"] == "fp32"
    assert tags["source_model"] == model_name and tags["source_version"] == source
    assert tags["converter"].startswith("tf2onnx ") and tags["opset"] == "17"
    assert float(tags["parity_max_abs_diff"]) <= 1e-4 and tags["parity_top1_agreement"] == "1"
    assert client.get_model_version(model_name, source).tags["onnx_model_version"] == onnx_version.version

    # The registered artifact is one self-contained .onnx file (no external data) ...
    files = registered_onnx(tracking_uri, model_name, onnx_version.version, tmp_path)
    onnx_files = [p for p in files if p.suffix == ".onnx"]
    assert len(onnx_files) == 1 and not any(p.name.endswith(".data") for p in files)
    # ... that tells its classes and input size by itself and reproduces Keras on images it never saw.
    model = onnx.load(onnx_files[0])
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == CLASSES
    assert meta["source_version"] == source and meta["input_scaling"] == "unit"
    session = ort.InferenceSession(str(onnx_files[0]))
    (inp,) = session.get_inputs()
    assert inp.name == "image" and inp.type == "tensor(uint8)" and inp.shape[1:] == [32, 32, 3]
    assert session.get_outputs()[0].name == "probabilities"
    fresh = rng_images(20, seed=99)
    got = session.run(None, {"image": fresh})[0]
    want = np.asarray(keras_model(fresh.astype(np.float32) / 255.0))
    assert np.abs(got - want).max() <= 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()


def test_second_run_changes_nothing_and_force_makes_a_new_version(tracking_uri, model_name, convert_cli):
    source = register_keras(tracking_uri, model_name, small_cnn(), CLASSES, samples=rng_images(6))
    code, first, _ = convert_cli("--model", model_name)
    assert code == 0
    before = versions(tracking_uri, model_name)

    code, again, err = convert_cli("--model", model_name)

    assert code == 0
    assert again["results"][0]["status"] == "exists"
    assert again["results"][0]["version"] == first["results"][0]["version"]
    assert versions(tracking_uri, model_name) == before
    assert "Exporting" not in err  # nothing was redone

    code, forced, _ = convert_cli("--model", model_name, "--force")

    assert code == 0 and forced["results"][0]["status"] == "registered"
    new = forced["results"][0]["version"]
    assert new not in before
    client = MlflowClient(tracking_uri)
    assert client.get_model_version_by_alias(model_name, "onnx").version == new
    assert client.get_model_version(model_name, source).tags["onnx_model_version"] == new


def test_alias_follows_the_newest_conversion(tracking_uri, model_name, convert_cli):
    client = MlflowClient(tracking_uri)
    first_keras = register_keras(tracking_uri, model_name, small_cnn(seed=1), CLASSES)
    code, first, _ = convert_cli("--model", model_name)
    assert code == 0
    second_keras = register_keras(tracking_uri, model_name, small_cnn(seed=2), CLASSES)

    code, second, _ = convert_cli("--model", model_name)  # default: the newest Keras version

    assert code == 0
    assert second["source"]["version"] == second_keras != first_keras
    assert client.get_model_version_by_alias(model_name, "onnx").version == second["results"][0]["version"]

    # Converting by source alias, under a custom target alias, leaves "onnx" where it was.
    client.set_registered_model_alias(model_name, "champion", first_keras)
    code, by_alias, _ = convert_cli(
        "--model", model_name, "--from-alias", "champion", "--alias", "onnx-old", "--force"
    )
    assert code == 0 and by_alias["source"]["version"] == first_keras
    assert (
        client.get_model_version_by_alias(model_name, "onnx-old").version == by_alias["results"][0]["version"]
    )
    assert client.get_model_version_by_alias(model_name, "onnx").version == second["results"][0]["version"]


def test_model_with_its_own_rescaling_layer(tracking_uri, model_name, convert_cli, tmp_path):
    keras_model = small_cnn(rescaling=1 / 127.5)
    register_keras(tracking_uri, model_name, keras_model, CLASSES)

    code, doc, _ = convert_cli("--model", model_name)  # no flag: the Rescaling layer is seen

    assert code == 0 and doc["results"][0]["figures"]["parity_max_abs_diff"] <= 1e-4
    assert doc["results"][0]["figures"]["input_scaling_origin"].startswith("the model has its own")
    tags = MlflowClient(tracking_uri).get_model_version_by_alias(model_name, "onnx").tags
    assert tags["input_scaling"] == "none"
    (path,) = [
        p
        for p in registered_onnx(tracking_uri, model_name, doc["results"][0]["version"], tmp_path)
        if p.suffix == ".onnx"
    ]
    images = rng_images(8, seed=5)
    got = ort.InferenceSession(str(path)).run(None, {"image": images})[0]
    want = np.asarray(keras_model(images.astype(np.float32)))  # the model scales raw pixels itself
    assert np.abs(got - want).max() <= 1e-4


def test_missing_class_indices_is_exit_2_unless_given(tracking_uri, model_name, convert_cli, tmp_path):
    register_keras(tracking_uri, model_name, small_cnn(), class_names=None)

    code, doc, err = convert_cli("--model", model_name)

    assert code == 2 and "class_indices.json" in doc["error"] and "--classes" in doc["error"]
    assert all(t.get("format") != "onnx" for t in versions(tracking_uri, model_name).values())

    code, doc, _ = convert_cli("--model", model_name, "--classes", str(class_indices_file(tmp_path, CLASSES)))
    assert code == 0 and doc["results"][0]["status"] == "registered"


def test_class_count_must_match_the_model(tracking_uri, model_name, convert_cli):
    register_keras(tracking_uri, model_name, small_cnn(classes=4), ["only", "three", "names"])
    code, doc, _ = convert_cli("--model", model_name)
    assert code == 2 and "3 class names" in doc["error"]


@pytest.mark.parametrize("args", [("--version", "99"), ("--from-alias", "nope")])
def test_unknown_version_or_alias_is_exit_2(tracking_uri, model_name, convert_cli, args):
    register_keras(tracking_uri, model_name, small_cnn(), CLASSES)
    code, doc, _ = convert_cli("--model", model_name, *args)
    assert code == 2 and "not found" in doc["error"]


def test_unknown_model_is_exit_2(convert_cli):
    code, doc, _ = convert_cli("--model", "no-such-model")
    assert code == 2 and "no-such-model" in doc["error"]


def test_onnx_version_is_not_a_conversion_source(tracking_uri, model_name, convert_cli):
    register_keras(tracking_uri, model_name, small_cnn(), CLASSES)
    code, doc, _ = convert_cli("--model", model_name)
    code, doc, _ = convert_cli("--model", model_name, "--version", doc["results"][0]["version"])
    assert code == 2 and "not a Keras model" in doc["error"]


def test_unreachable_server_is_exit_3_within_seconds(dead_url):
    """The real console entry point, as a DAG task runs it, against a port nobody listens on."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "convert", "--tracking-uri", dead_url, "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "unreachable" in json.loads(done.stdout)["error"]
    assert time.monotonic() - started < 60


def test_parity_failure_registers_nothing(tracking_uri, model_name, convert_cli):
    """tf2onnx approximates TensorFlow's 'area' resize: a real divergence, not a mocked gate."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64, 64, 3)),
        keras.layers.Resizing(23, 23, interpolation="area"),
        keras.layers.Conv2D(4, 3),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])  # fmt: skip
    register_keras(tracking_uri, model_name, model, ["a", "b", "c"], samples=rng_images(8, size=64))
    before = versions(tracking_uri, model_name)

    code, doc, err = convert_cli("--model", model_name)

    assert code == 1 and "parity check failed" in doc["error"]
    assert doc["details"]["parity_max_abs_diff"] > 1e-3  # above the float32 tolerance
    assert "parity_max_abs_diff" in err  # the figures are printed for the person reading the DAG log
    assert versions(tracking_uri, model_name) == before
    assert MlflowClient(tracking_uri).get_registered_model(model_name).aliases == {}


def test_int8_gate_refuses_a_model_whose_int8_disagrees(tracking_uri, model_name, convert_cli):
    """Near-tied class scores that int8 rounding flips: the real quantizer and the real gate, nothing mocked."""
    from convert.samples import generated

    names = [f"class-{i}" for i in range(16)]
    register_keras(tracking_uri, model_name, near_tie_cnn(), names, samples=generated(30, (32, 32), seed=4))

    code, doc, _ = convert_cli("--model", model_name, "--quantize", "int8")

    assert code == 1 and "int8 gate failed" in doc["error"]
    assert doc["details"]["int8_top1_agreement"] < 0.98
    tags = versions(tracking_uri, model_name).values()
    assert [t.get("precision") for t in tags if t.get("format") == "onnx"] == ["fp32"]


def test_int8_version_registered_when_it_agrees(tracking_uri, model_name, convert_cli, tmp_path):
    register_keras(
        tracking_uri, model_name, colour_cnn(), ["red", "green", "blue"], samples=colour_images(45)
    )

    code, doc, err = convert_cli("--model", model_name, "--quantize", "int8")

    assert code == 0, doc
    fp32, int8 = doc["results"]
    assert int8["status"] == "registered" and int8["alias"] == "onnx-int8"
    assert int8["figures"]["int8_top1_agreement"] >= 0.98 and int8["figures"]["int8_heldout_images"] == 30
    assert int8["figures"]["int8_speedup"] > 0  # measured, whatever it is for a toy model
    client = MlflowClient(tracking_uri)
    version = client.get_model_version_by_alias(model_name, "onnx-int8")
    assert version.version == int8["version"] and version.tags["precision"] == "int8"
    (path,) = [
        p for p in registered_onnx(tracking_uri, model_name, int8["version"], tmp_path) if p.suffix == ".onnx"
    ]
    model = onnx.load(path)
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "int8"
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)

    # Asking again for int8 finds both versions and changes nothing.
    before = versions(tracking_uri, model_name)
    code, again, _ = convert_cli("--model", model_name, "--quantize", "int8")
    assert code == 0 and [r["status"] for r in again["results"]] == ["exists", "exists"]
    assert versions(tracking_uri, model_name) == before


def test_a_wrong_scaling_fails_on_labelled_samples_and_names_the_right_one(
    tracking_uri, model_name, convert_cli
):
    """Parity alone would pass: Keras and ONNX agree on the same wrongly scaled pixels."""
    images, labels = brightness_images(40)
    register_keras(tracking_uri, model_name, brightness_cnn(), ["dark", "bright"], images, labels)

    code, doc, err = convert_cli("--model", model_name, "--input-scaling", "none")

    assert code == 1 and "--input-scaling unit" in doc["error"], doc
    assert (
        doc["details"]["sample_top1_accuracy"] == 0.5 and doc["details"]["sample_top1_accuracy_unit"] == 1.0
    )
    assert all(t.get("format") != "onnx" for t in versions(tracking_uri, model_name).values())

    code, doc, _ = convert_cli("--model", model_name)  # the default, unit, is right for this model

    assert code == 0
    assert doc["results"][0]["figures"]["sample_top1_accuracy"] == 1.0
    tags = MlflowClient(tracking_uri).get_model_version_by_alias(model_name, "onnx").tags
    assert tags["sample_top1_accuracy"] == "1" and tags["sample_labelled_images"] == "40"


def test_the_runs_preprocessing_param_is_baked_in(tracking_uri, model_name, convert_cli, tmp_path):
    import keras

    model = small_cnn()
    register_keras(tracking_uri, model_name, model, CLASSES, rng_images(6), params={"preprocessing": "torch"})

    code, doc, _ = convert_cli("--model", model_name)

    assert code == 0 and doc["results"][0]["figures"]["input_scaling_origin"] == "run param preprocessing"
    (path,) = [
        p
        for p in registered_onnx(tracking_uri, model_name, doc["results"][0]["version"], tmp_path)
        if p.suffix == ".onnx"
    ]
    images = rng_images(8, seed=5)
    got = ort.InferenceSession(str(path)).run(None, {"image": images})[0]
    want = np.asarray(model(keras.applications.densenet.preprocess_input(images.astype(np.float32))))
    assert np.abs(got - want).max() <= 1e-4

    other = f"{model_name}-bad"
    register_keras(tracking_uri, other, model, CLASSES, params={"preprocessing": "imagenet"})
    code, doc, _ = convert_cli("--model", other)
    assert code == 2 and "preprocessing='imagenet'" in doc["error"] and "--input-scaling" in doc["error"]


def test_a_rerun_publishes_what_an_interrupted_run_registered(tracking_uri, model_name, convert_cli):
    client = MlflowClient(tracking_uri)
    source = register_keras(tracking_uri, model_name, small_cnn(), CLASSES)
    code, doc, _ = convert_cli("--model", model_name)
    onnx_version = doc["results"][0]["version"]
    # As if the run had stopped between registering the version and publishing it.
    client.delete_registered_model_alias(model_name, "onnx")
    client.delete_model_version_tag(model_name, source, "onnx_model_version")

    code, again, _ = convert_cli("--model", model_name)

    assert code == 0 and again["results"][0]["status"] == "published"
    assert again["results"][0]["version"] == onnx_version
    assert client.get_model_version_by_alias(model_name, "onnx").version == onnx_version
    assert client.get_model_version(model_name, source).tags["onnx_model_version"] == onnx_version
    code, third, _ = convert_cli("--model", model_name)
    assert third["results"][0]["status"] == "exists"


@pytest.mark.parametrize("debug", [False, True])
def test_a_crash_is_exit_4_with_one_json_document(monkeypatch, capsys, debug):
    """Unit test of the CLI's last line of defence: any unexpected error (here raised by a stand-in for the
    pipeline) is exit 4, which a DAG retries, never 1, which it must not."""
    from convert import cli

    def crash(options, step):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(cli, "run", crash)
    code = cli.main(["--tracking-uri", "http://127.0.0.1:9", "--json", *(["--debug"] if debug else [])])

    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert code == 4 and doc["exit_code"] == 4 and doc["ok"] is False
    assert doc["error"].startswith("fish-convert crashed: RuntimeError: disk on fire;")
    assert ("Traceback" in err) == debug


def test_bad_usage_with_json_is_still_one_json_document(capsys):
    from convert import cli

    assert cli.main(["--json", "--quantize", "int4"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 2 and "--quantize" in doc["error"] and "int4" in doc["error"]

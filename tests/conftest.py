import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from convert.demo import mlflow_server  # noqa: E402

# Enough training for confident predictions (the int8 gate needs them) in about a minute on 2 cores.
TEST_TRAINING = {"size": 96, "alpha": 0.35, "epochs": 5, "train_per_class": 150, "time_budget_s": 150}


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory):
    """A real `mlflow server` process on a free loopback port, for the whole session."""
    root = tmp_path_factory.mktemp("mlflow")
    process, port = mlflow_server.start_on_free_port(root)
    yield f"http://127.0.0.1:{port}"
    mlflow_server.stop(process)


@pytest.fixture(scope="session")
def fish_registry(tracking_uri, tmp_path_factory):
    """The demo's MobileNetV2 trained on synthetic fish (smaller and shorter than the demo's run) and
    registered as the training DAG does; returns (model name, Keras version, local samples folder)."""
    from convert.demo.seed import seed_registry

    samples_dir = tmp_path_factory.mktemp("samples")
    name = "fish-classification-mobilenetv2"
    version = seed_registry(tracking_uri, name, samples_dir, log=lambda line: None, **TEST_TRAINING)
    return name, version, samples_dir


@pytest.fixture(scope="session")
def converted_demo(fish_registry, tracking_uri):
    """The demo's MobileNetV2 converted by fish-convert (nothing to do if a test before did it); returns
    (MODEL_URI, name, ONNX version, sample photos folder: one sub-folder per species)."""
    from mlflow import MlflowClient

    from convert.cli import main

    name, _, samples_dir = fish_registry
    assert main(["--tracking-uri", tracking_uri, "--model", name]) == 0
    version = MlflowClient(tracking_uri).get_model_version_by_alias(name, "onnx").version
    return f"models:/{name}@onnx", name, version, samples_dir


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (pgserver) for the session; tests may stop and start it.

    Its data is not under pytest's temporary root: as root, pgserver runs PostgreSQL as the user 'pgserver' and
    opens the folders above the data to others, but every pytest session that starts on the machine resets that
    root to 0700, after which the server can neither start again nor write its files."""
    from tests.postgres import Postgres

    folder = Path(tempfile.mkdtemp(prefix="fish-tests-pg-"))
    server = Postgres(folder / "pg")
    yield server
    server.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def dead_url():
    """An http:// URL where connections are refused for as long as the test runs: a loopback port held bound
    but never listening. (A port free_port() found free can be taken by another process before it is used.)"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def model_name(request):
    """A registered-model name of the test's own, so tests sharing the server never see each other's versions."""
    return re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")


@pytest.fixture
def convert_cli(capsys, tracking_uri):
    """Run fish-convert in this process (TensorFlow is imported once) with --json; returns (exit code, doc)."""
    from convert.cli import main

    def run(*args: str):
        capsys.readouterr()
        code = main(["--tracking-uri", tracking_uri, "--json", *args])
        captured = capsys.readouterr()
        doc = json.loads(captured.out) if captured.out.strip() else None
        return code, doc, captured.err

    return run

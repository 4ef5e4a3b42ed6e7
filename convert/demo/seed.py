"""Leave the demo registry as the team's training DAG would: a Keras MobileNetV2 registered with
mlflow.keras.log_model, class_indices.json and held-out sample images in its run."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from PIL import Image

from convert.demo import fishes, train

EXPERIMENT = "fish-classification-training"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def write_samples(images: np.ndarray, labels: np.ndarray, folder: Path) -> list[Path]:
    """Held-out images as JPEGs, one folder a species, the way a photo set is laid out."""
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / slug(fishes.SPECIES[label]) / f"{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=92)
        paths.append(path)
    return paths


def seed_registry(tracking_uri: str, model_name: str, samples_dir: Path, log=print, **train_options) -> str:
    """Train the demo model and register it; returns the new Keras version. Samples land in `samples_dir` too,
    for the tests, the benchmark and the UI. `train_options` go to `train.train` (tests train smaller)."""
    result = train.train(log=log, **train_options)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name="train-mobilenetv2-synthetic"), tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"architecture": "MobileNetV2", "alpha": result.alpha, "input_size": result.size,
                           "epochs": result.epochs, "weights": "none (trained from scratch)",
                           # how the pixels were scaled for training: fish-convert bakes the same into the graph
                           "preprocessing": "unit"})  # fmt: skip
        mlflow.log_metrics(
            {"heldout_accuracy": result.heldout_accuracy, "train_seconds": result.train_seconds}
        )
        info = mlflow.keras.log_model(result.model, name="model", registered_model_name=model_name)
        mlflow.log_dict({name: i for i, name in enumerate(fishes.SPECIES)}, "class_indices.json")
        write_samples(result.heldout_x, result.heldout_y, Path(tmp))
        mlflow.log_artifacts(tmp, "samples")
    write_samples(result.heldout_x, result.heldout_y, samples_dir)
    return str(info.registered_model_version)

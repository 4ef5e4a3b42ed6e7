"""Toy Keras models registered the way the data team's DAG does it: mlflow.keras.log_model + class_indices.json."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np


def small_cnn(size: int = 32, classes: int = 4, rescaling: float | None = None, seed: int = 0):
    """A few-layer CNN with BatchNorm and softmax: converts in seconds, exercises the same ops as MobileNetV2."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((size, size, 3))]
    if rescaling is not None:
        layers.append(keras.layers.Rescaling(rescaling))
    layers += [
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.DepthwiseConv2D(3, activation="relu6"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, activation="softmax"),
    ]
    model = keras.Sequential(layers)
    # Non-trivial BatchNorm statistics so the exported graph has real work to agree on.
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    rng = np.random.default_rng(seed)
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights(
        [gamma * 1.5, beta + 0.1, rng.normal(0, 0.1, mean.shape), var + rng.uniform(0, 1, var.shape)]
    )
    return model


def register_keras(
    tracking_uri: str,
    name: str,
    model,
    class_names: list[str] | None,
    samples: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    params: dict[str, str] | None = None,
) -> str:
    """Log and register a Keras model as the training DAG does; returns the new version number. With `labels`,
    the samples lie in one folder per class (samples/<class>/001.png), as a photo set is laid out."""
    from PIL import Image

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"train-{name}")
    with mlflow.start_run(), tempfile.TemporaryDirectory() as tmp:
        info = mlflow.keras.log_model(model, name="model", registered_model_name=name)
        if params:
            mlflow.log_params(params)
        if class_names is not None:
            mlflow.log_dict({c: i for i, c in enumerate(class_names)}, "class_indices.json")
        if samples is not None:
            for i, image in enumerate(samples):
                folder = Path(tmp) / (class_names[labels[i]] if labels is not None else "")
                folder.mkdir(exist_ok=True)
                Image.fromarray(image).save(folder / f"{i:03d}.png")
            mlflow.log_artifacts(tmp, "samples")
    return str(info.registered_model_version)


def class_indices_file(folder: Path, class_names: list[str]) -> Path:
    path = folder / "classes.json"
    path.write_text(json.dumps({c: i for i, c in enumerate(class_names)}))
    return path


def near_tie_cnn(classes: int = 16, seed: int = 3):
    """Class scores that differ by 1e-4 of their size: fp32 keeps those differences, int8's rounding of each
    weight (about 1/254 of its range) erases them, so int8 picks other classes. A real int8 failure mode."""
    model = small_cnn(classes=classes, seed=seed)
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    rng = np.random.default_rng(seed)
    kernel = kernel[:, :1] + 1e-4 * rng.normal(size=kernel.shape)
    dense.set_weights([kernel.astype(np.float32), np.zeros_like(bias)])
    return model


def colour_cnn():
    """Classifies red, green or blue photos by their dominant channel with wide margins, as a well-trained
    model does on clear photos: int8 rounding cannot flip its top-1 on such images (see colour_images)."""
    import keras

    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])  # fmt: skip
    conv, dense = model.layers[0], model.layers[-1]
    kernel = np.zeros((3, 3, 3, 3), dtype=np.float32)
    kernel[1, 1] = np.eye(3)  # identity: each channel passes through
    conv.set_weights([kernel, np.zeros(3, np.float32)])
    dense.set_weights([np.eye(3, dtype=np.float32) * 8.0, np.zeros(3, np.float32)])
    return model


def colour_images(n: int, seed: int = 0) -> np.ndarray:
    """Noisy photos with one clearly dominant channel, cycling red, green, blue."""
    rng = np.random.default_rng(seed)
    images = rng.normal(70, 25, (n, 32, 32, 3))
    for i in range(n):
        images[i, ..., i % 3] += rng.uniform(90, 150)
    return np.clip(images, 0, 255).astype(np.uint8)


def brightness_cnn():
    """Tells dark photos from bright ones by their mean pixel against 0.5, in x/255 units: fed raw 0..255
    pixels instead, it calls every photo bright. A model that is only right under its own scaling."""
    import keras

    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])  # fmt: skip
    kernel = np.array([[-10.0, 10.0]] * 3, dtype=np.float32) / 3
    model.layers[-1].set_weights([kernel, np.array([5.0, -5.0], np.float32)])
    return model


def brightness_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy dark (label 0) and bright (label 1) photos, alternating."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    means = np.where(labels == 1, rng.uniform(170, 230, n), rng.uniform(25, 85, n))
    images = rng.normal(means[:, None, None, None], 20, (n, 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8), labels

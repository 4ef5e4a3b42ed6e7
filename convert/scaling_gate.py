"""Is the input scaling the one the model was trained with? Parity cannot tell: it feeds Keras and ONNX the same
preprocessed pixels, so a wrong scaling agrees perfectly with itself and serves garbage. Labelled samples can:
a model fed the input it was trained on beats chance on them."""

from __future__ import annotations

import math

import numpy as np

from convert import parity, preprocessing
from convert.errors import CheckFailed

# Another scaling must beat the chosen one by this much top-1 accuracy to be called clearly better.
CLEARLY_BETTER = 0.2


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(axis=1) == labels).mean())


def chance_ceiling(classes: int, images: int) -> float:
    """Top-1 accuracy a model that guesses reaches by luck, three standard errors up."""
    p = 1 / classes
    return p + 3 * math.sqrt(p * (1 - p) / images)


def judge(model, pixels: np.ndarray, labels: np.ndarray, chosen: str, chosen_probabilities, channels: int):
    """Figures for the version's tags; CheckFailed when the chosen scaling is no better than chance while
    another is clearly better (the other scalings are only tried then)."""
    classes = chosen_probabilities.shape[1]
    ceiling = chance_ceiling(classes, len(labels))
    figures = {
        "sample_top1_accuracy": accuracy(chosen_probabilities, labels),
        "sample_labelled_images": len(labels),
    }
    if figures["sample_top1_accuracy"] > ceiling:
        return figures
    others = {
        name: accuracy(parity.keras_probabilities(model, pixels, name, channels), labels)
        for name in _distinct_modes(chosen)
    }
    best = max(others, key=others.get)
    if others[best] > ceiling and others[best] - figures["sample_top1_accuracy"] >= CLEARLY_BETTER:
        raise CheckFailed(
            f"input scaling '{chosen}' looks wrong: top-1 accuracy on {len(labels)} labelled samples is "
            f"{figures['sample_top1_accuracy']:.0%} (chance {1 / classes:.0%}), and {others[best]:.0%} with "
            f"'{best}'; pass --input-scaling {best} (or log the run param 'preprocessing'); nothing was registered",
            figures | {f"sample_top1_accuracy_{name}": value for name, value in others.items()},
        )
    return figures


def _distinct_modes(chosen: str) -> list[str]:
    """Every other mode, one name for each distinct computation ('tf' is 'symmetric')."""

    def computation(name: str):
        mode = preprocessing.MODES[name]
        return mode.scale, mode.offset, mode.bgr

    seen = {computation(chosen)}
    names = []
    for name in preprocessing.MODES:
        if computation(name) not in seen:
            seen.add(computation(name))
            names.append(name)
    return names

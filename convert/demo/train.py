"""Train the demo fish classifier: a small MobileNetV2 from scratch on synthetic photos.

There is no internet here (no pretrained weights, no real dataset), so the
model is trained from random weights on `fishes.make_dataset` images, sized to
finish in a few minutes on a 2-core CPU. Held-out images come from a different
seed than the training images, so the reported accuracy is on unseen photos.

The model takes float32 images scaled to [0, 1] (x / 255) and outputs softmax
probabilities; scaling is the caller's job, there is no Rescaling layer inside.
"""

from __future__ import annotations

import contextlib
import math
import time
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from . import fishes

# Chosen by measurement on the 2-core CPU this demo targets. Training plans its
# step count from the step speed it measures (see _Plan): an idle machine runs
# all `epochs`, a busy one fewer steps over a whole learning-rate schedule.
# 128 px learns far more per step than 96 px (over 378 steps: 91 % held-out
# against 77 %), which pays for its higher cost per step.
DEFAULT_SIZE = 128
DEFAULT_ALPHA = 0.35
DEFAULT_EPOCHS = 4
TRAIN_PER_CLASS = 480
HELDOUT_PER_CLASS = 40
# A step of 16 images costs ~60 % of one of 32: more steps for the same time,
# which count most when time is short.
BATCH_SIZE = 16
# Half or 1.5 times this did worse over the same steps.
LEARNING_RATE = 3e-3
# The cosine ends at this fraction of LEARNING_RATE.
FINAL_LR_FRACTION = 0.02
# BatchNorm's default momentum (0.99) averages over ~100 steps, while from
# scratch the weights change a lot within that many steps, so the moving
# statistics describe older weights than the final ones and inference-mode
# accuracy falls behind training accuracy (measured: 90 % held-out with 0.99
# against 98 % once the statistics are recomputed). Two fixes, both cheap:
# momentum 0.9 (~10-step memory) keeps the statistics close during training,
# and _recalibrate_batchnorm recomputes them from the final weights at the end,
# which alone is enough whatever the momentum.
BN_MOMENTUM = 0.9
# One eager forward pass over this many images: eager calls pay a per-layer
# overhead that grows a lot on a busy CPU, so one large batch, not several.
RECALIBRATION_IMAGES = 384
# The first steps trace the training graph: their time says nothing of the speed.
WARMUP_STEPS = 3
# The plan is redone every REPLAN_STEPS steps from the speed of the last
# SPEED_WINDOW: long enough to average out a busy machine's jitter (seen: step
# times varying two-fold within a minute), short enough to follow a lasting change.
REPLAN_STEPS = 20
SPEED_WINDOW = 60
# Time kept after training for BatchNorm recalibration and evaluation, in
# seconds and in step times (it slows down with the steps on a busy machine).
FINISH_RESERVE_S = 10.0
FINISH_RESERVE_STEPS = 60


@dataclass
class TrainResult:
    """A trained model with its held-out accuracy and the data it was measured on."""

    model: keras.Model
    heldout_accuracy: float
    train_seconds: float
    epochs: float  # passes over the training images, fractional when the plan was cut short
    size: int
    alpha: float
    heldout_x: np.ndarray  # uint8 [N, size, size, 3]
    heldout_y: np.ndarray  # int [N], indices into fishes.SPECIES


def build_model(num_classes: int, size: int, alpha: float) -> keras.Model:
    """MobileNetV2 with random weights for float32 inputs in [0, 1], softmax outputs."""
    return keras.applications.MobileNetV2(
        weights=None,
        alpha=alpha,
        input_shape=(size, size, 3),
        classes=num_classes,
        classifier_activation="softmax",
    )


def _batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    # MobileNetV2 is a flat functional model: every BatchNorm is a top-level layer.
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def _set_bn_momentum(model: keras.Model, momentum: float) -> None:
    for layer in _batchnorm_layers(model):
        layer.momentum = momentum


def _fused_batchnorm_call(layer: keras.layers.BatchNormalization) -> Callable:
    """`layer.call` with TensorFlow's fused op in training mode: same result, one op instead of ~15."""

    def call(inputs, training=None, mask=None):
        if not training:
            return type(layer).call(layer, inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, layer.gamma, layer.beta, epsilon=layer.epsilon, is_training=True
        )
        layer.moving_mean.assign(layer.moving_mean * layer.momentum + mean * (1.0 - layer.momentum))
        layer.moving_variance.assign(
            layer.moving_variance * layer.momentum + variance * (1.0 - layer.momentum)
        )
        return outputs

    return call


def _fused_adam_update_step(self: keras.optimizers.Adam, gradient, variable, learning_rate) -> None:
    """Adam's update as TensorFlow's one fused op (Keras 3 spells it out in ~20 ops a variable)."""
    dtype = variable.dtype
    step = tf.cast(self.iterations + 1, dtype)
    i = self._get_variable_index(variable)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle,
        m=self._momentums[i].handle,
        v=self._velocities[i].handle,
        beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
        beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
        lr=tf.cast(learning_rate, dtype),
        beta1=tf.cast(self.beta_1, dtype),
        beta2=tf.cast(self.beta_2, dtype),
        epsilon=tf.cast(self.epsilon, dtype),
        grad=tf.cast(gradient, dtype),
    )


@contextlib.contextmanager
def _fused_ops(model: keras.Model) -> Iterator[None]:
    """Fused BatchNorm and Adam while training: per-op overhead dominates a training step on this CPU,
    all the more on a busy one (measured: twice the steps a second). Instance attributes only, removed
    afterwards, so the model saved is plain Keras (BatchNormalization, Adam)."""
    for layer in _batchnorm_layers(model):
        layer.call = _fused_batchnorm_call(layer)
    model.optimizer.update_step = types.MethodType(_fused_adam_update_step, model.optimizer)
    try:
        yield
    finally:
        for layer in _batchnorm_layers(model):
            del layer.call
        del model.optimizer.update_step


def _scaled(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def _train_dataset(x: np.ndarray, y: np.ndarray, seed: int) -> tf.data.Dataset:
    """Endless shuffled batches of scaled images; uint8 stays in memory, scaling happens per batch."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    # Full batches only: one traced graph, and no BatchNorm step on a handful of images.
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(BATCH_SIZE, drop_remainder=True)
    ds = ds.map(lambda img, lab: (tf.cast(img, tf.float32) / 255.0, lab), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.repeat().prefetch(2)


class _Clock:
    """Seconds since the start of train(), shared by the logs and the plan."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def _cosine(progress: float) -> float:
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return LEARNING_RATE * (FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * cosine)


class _Plan(keras.callbacks.Callback):
    """Plans the step count from the measured step speed and runs a whole cosine schedule over it.

    A fixed schedule cut by a deadline never decays (stopped after 1 of 5
    epochs, the learning rate is still near its peak, and the weights are
    noisy). Here the step count is re-planned from the speed of the last
    steps, so the cosine always reaches its end, by the deadline: at most
    `max_steps`, fewer on a busy machine, and more again if it gets faster.
    """

    def __init__(
        self,
        clock: _Clock,
        deadline_s: float,
        max_steps: int,
        steps_per_epoch: int,
        log: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.clock = clock
        self.deadline_s = deadline_s
        self.max_steps = max_steps
        self.steps_per_epoch = steps_per_epoch
        self.log = log
        self.planned = max_steps
        self.step = 0
        self.step_s = 0.0
        self.stamps: deque[float] = deque(maxlen=SPEED_WINDOW + 1)
        self.logged_plan = 0

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self.model.optimizer.learning_rate = _cosine(self.step / self.planned)

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.step += 1
        now = self.clock()
        if self.step >= WARMUP_STEPS:
            self.stamps.append(now)
        if len(self.stamps) > REPLAN_STEPS and (self.step - WARMUP_STEPS) % REPLAN_STEPS == 0:
            self._replan(now)
        if self.step >= self.planned:
            self.model.stop_training = True

    def _replan(self, now: float) -> None:
        self.step_s = (self.stamps[-1] - self.stamps[0]) / (len(self.stamps) - 1)
        reserve = max(FINISH_RESERVE_S, FINISH_RESERVE_STEPS * self.step_s)
        affordable = self.step + int((self.deadline_s - reserve - now) / self.step_s)
        self.planned = max(self.step + 1, min(self.max_steps, affordable))
        # Logged when first known and when it moves by a quarter or more.
        if not self.logged_plan or abs(self.planned - self.logged_plan) >= self.logged_plan / 4:
            cut = (
                ""
                if self.planned == self.max_steps
                else f" (time for {self.planned / self.max_steps:.0%} of the full plan)"
            )
            self.log(
                f"{self.step_s:.2f}s a step: planning {self.planned} steps, "
                f"{self.planned / self.steps_per_epoch:.1f} epochs{cut} [{now:.0f}s]"
            )
            self.logged_plan = self.planned

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        self.log(
            f"epoch {self.epochs_done:.1f}: loss {logs.get('loss', float('nan')):.3f} "
            f"accuracy {logs.get('accuracy', float('nan')):.3f} [{self.clock():.0f}s]"
        )

    @property
    def epochs_done(self) -> float:
        return self.step / self.steps_per_epoch


def _recalibrate_batchnorm(model: keras.Model, x: np.ndarray) -> None:
    """Recompute BatchNorm moving statistics from the final weights.

    The moving averages collected during training mix statistics of earlier,
    different weights. One forward pass in training mode (no gradient step)
    with momentum 0 makes each moving value the statistic of that batch under
    the final weights.
    """
    _set_bn_momentum(model, 0.0)
    # Eager call: a traced graph would cost a trace for a single use.
    model(_scaled(x[:RECALIBRATION_IMAGES]), training=True)
    _set_bn_momentum(model, BN_MOMENTUM)


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    # One eager call: predict() would trace a graph for 360 images.
    probs = np.asarray(model(_scaled(x), training=False))
    return float(np.mean(np.argmax(probs, axis=1) == y))


def _generate(seed: int, size: int, train_per_class: int) -> tuple[np.ndarray, ...]:
    """Training and held-out images from two different generator seeds, so none are shared."""
    x_train, y_train = fishes.make_dataset(train_per_class, seed=2 * seed + 1, size=size)
    x_held, y_held = fishes.make_dataset(HELDOUT_PER_CLASS, seed=2 * seed + 2, size=size)
    return x_train, y_train, x_held, y_held


def _zero_init_residual(model: keras.Model) -> None:
    """Start every residual block as the identity: the last BatchNorm of each block that ends in an Add
    scales its branch by 0 (Goyal et al., 2017). From scratch and with few steps, a deep net then
    learns much sooner (measured at 128 px, 810 steps of 16: 91 % held-out without, 96 % with)."""
    names = {layer.name for layer in model.layers}
    for layer in _batchnorm_layers(model):
        block = layer.name.removesuffix("_project_BN")
        if block != layer.name and f"{block}_add" in names:
            layer.gamma.assign(np.zeros(layer.gamma.shape, "float32"))


def _compiled_model(size: int, alpha: float) -> keras.Model:
    model = build_model(len(fishes.SPECIES), size, alpha)
    _set_bn_momentum(model, BN_MOMENTUM)
    _zero_init_residual(model)
    # The learning rate is set every step by _Plan (a cosine over the planned steps).
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train(
    size: int = DEFAULT_SIZE,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    time_budget_s: float = 285.0,
    log: Callable[[str], None] = print,
    *,
    epochs: int = DEFAULT_EPOCHS,
    train_per_class: int = TRAIN_PER_CLASS,
) -> TrainResult:
    """Generate synthetic data, train the MobileNetV2 classifier and measure it on held-out photos.

    `time_budget_s` bounds the whole call, data generation included. `epochs`
    is the plan on a machine fast enough for it; a slower one trains for the
    steps it can afford, planned from the step speed it measures, with the
    learning-rate schedule compressed to fit (and the result is then no longer
    the same for every run with this seed). Training and held-out images come
    from different generator seeds.
    """
    clock = _Clock()
    keras.utils.set_random_seed(seed)
    x_train, y_train, x_held, y_held = _generate(seed, size, train_per_class)
    log(f"generated {len(x_train)} training and {len(x_held)} held-out images at {size}px [{clock():.0f}s]")

    model = _compiled_model(size, alpha)
    steps_per_epoch = len(x_train) // BATCH_SIZE
    plan = _Plan(clock, time_budget_s, epochs * steps_per_epoch, steps_per_epoch, log)
    with _fused_ops(model):
        # shuffle=False: the dataset shuffles itself (Keras would only warn it ignores the flag).
        model.fit(
            _train_dataset(x_train, y_train, seed),
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            shuffle=False,
            verbose=0,
            callbacks=[plan],
        )
        _recalibrate_batchnorm(model, x_train)
    log(f"recomputed BatchNorm statistics [{clock():.0f}s]")
    accuracy = _accuracy(model, x_held, y_held)
    seconds = clock()
    epochs_done = round(plan.epochs_done, 2)
    log(f"held-out accuracy {accuracy:.3f} after {epochs_done:g} epochs [{seconds:.0f}s]")
    return TrainResult(model, accuracy, seconds, epochs_done, size, alpha, x_held, y_held)

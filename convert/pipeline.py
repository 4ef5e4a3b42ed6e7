"""The conversion, step by step: find the Keras version, export, check parity, register (and int8)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from mlflow import MlflowClient

from convert import export, keras_model, parity, preprocessing, registry, samples, scaling_gate
from convert import quantize as quantization
from convert.errors import CheckFailed, InvalidInput

# The run parameter in which a training run names its keras.applications preprocess_input mode.
PREPROCESSING_PARAM = "preprocessing"


@dataclass(frozen=True)
class Options:
    tracking_uri: str | None = None
    model: str = "fish-classification-mobilenetv2"
    version: str | None = None
    from_alias: str | None = None
    target_name: str | None = None
    alias: str = "onnx"
    int8_alias: str = "onnx-int8"
    classes: Path | None = None
    samples: Path | None = None
    input_scaling: str | None = None  # None: the run's `preprocessing` param, else what the model shows
    input_size: tuple[int, int] | None = None  # for a model that takes images of any size
    imports: tuple[str, ...] = ()  # the team's modules that register custom layers
    trust_lambda: bool = False
    quantize: str | None = None
    force: bool = False
    tolerance: float | None = None  # None: by the dtype the model computes in
    min_int8_agreement: float = quantization.MIN_INT8_AGREEMENT
    opset: int = export.DEFAULT_OPSET


@dataclass
class Result:
    """One ONNX version this run made or found."""

    precision: str
    version: str
    status: (
        str  # "registered", "exists", or "published" (an earlier run registered it, this one published it)
    )
    alias: str | None = None
    figures: dict = field(default_factory=dict)


# A step runner: step("Exporting to ONNX", fn) runs fn and shows progress; the CLI supplies a rich one.
Step = Callable[[str, Callable], object]


def plain_step(description: str, work: Callable):
    return work()


def run(options: Options, step: Step = plain_step) -> tuple[registry.Source, str, list[Result]]:
    """Convert the chosen Keras version; returns the source, the target model name and one result a precision."""
    client = step("Connecting to MLflow", lambda: registry.connect(options.tracking_uri))
    source = step(
        f"Finding the Keras version of '{options.model}'",
        lambda: registry.resolve_source(client, options.model, options.version, options.from_alias),
    )
    job = _Job(client, source, options, step)
    if options.quantize == "int8":
        job.check_int8_possible()  # before the fp32 version is registered: refuse the whole run, not half
    results = [job.fp32()]
    if options.quantize == "int8":
        results.append(job.int8())
    return source, job.target, results


class _Job:
    def __init__(self, client: MlflowClient, source: registry.Source, options: Options, step: Step):
        self.client, self.source, self.options, self.step = client, source, options, step
        self.target = options.target_name or source.name
        self._tmp = tempfile.TemporaryDirectory(prefix="fish-convert-")
        self._fresh_fp32: onnx.ModelProto | None = None

    def fp32(self) -> Result:
        existing = registry.existing_onnx(self.client, self.target, self.source, "fp32")
        if existing and not self.options.force:
            return self._finish(existing, "fp32", self.options.alias)
        figures = self._check_scaling()
        model = self.step("Exporting to ONNX with tf2onnx", self._export)
        report = self.step(
            f"Checking parity: Keras vs onnxruntime (tolerance {self.tolerance:g}, {self.compute_dtype})",
            lambda: self._parity(model),
        )
        figures |= {f"parity_{k}": v for k, v in report.as_dict().items() if k != "passed"}
        if not report.passed:
            raise CheckFailed(
                f"parity check failed: max |difference| {report.max_abs_diff:.3g} (tolerance "
                f"{report.tolerance:g}), top-1 mismatches {report.top1_mismatches - report.top1_near_ties} of {report.images} images "
                f"(besides {report.top1_near_ties} near ties); "
                "nothing was registered",
                figures,
            )
        self._fresh_fp32 = model
        version = self.step(
            f"Registering as a new version of '{self.target}'",
            lambda: self._register(model, self.precision, figures, self.options.alias, "fp32"),
        )
        return Result(self.precision, version, "registered", self.options.alias, figures)

    def _finish(self, existing, kind: str, alias: str) -> Result:
        """An ONNX version an earlier run made: published already, or published now (that run stopped
        between registering it and moving the alias)."""
        result = _found(existing)
        if registry.is_published(self.client, self.target, result.version, self.source, kind):
            return result
        self.step(
            f"Publishing version {result.version} (an earlier run registered it but did not move '{alias}')",
            lambda: registry.publish(self.client, self.target, result.version, alias, self.source, kind),
        )
        return Result(result.precision, result.version, "published", alias, result.figures)

    def _check_scaling(self) -> dict:
        figures = {"input_scaling_origin": self.scaling_origin}
        labels = self.check_images.labels
        if labels is None:
            return figures
        return figures | self.step(
            f"Checking input scaling '{self.scaling}' ({self.scaling_origin}) on {len(labels)} labelled samples",
            lambda: scaling_gate.judge(
                self.keras_model,
                self.check_images.pixels,
                labels,
                self.scaling,
                self.keras_probabilities,
                self.input_spec.channels,
            ),
        )

    def check_int8_possible(self) -> None:
        if registry.existing_onnx(self.client, self.target, self.source, "int8") and not self.options.force:
            return
        if self.compute_dtype != "float32":
            raise InvalidInput(
                f"the Keras model computes in {self.compute_dtype}: int8 quantization starts from a float32 "
                "model; convert without --quantize"
            )

    def int8(self) -> Result:
        existing = registry.existing_onnx(self.client, self.target, self.source, "int8")
        if existing and not self.options.force:
            return self._finish(existing, "int8", self.options.int8_alias)
        fp32 = self._fresh_fp32 or self.step("Downloading the registered fp32 ONNX", self._registered_fp32)
        calibration, heldout = samples.split(self.check_images.pixels)
        int8, calibration_method = self.step(
            f"Quantizing to int8 (static QDQ, {len(calibration)} calibration images)",
            lambda: quantization.quantize_int8(fp32, calibration),
        )
        int8_bytes = int8.SerializeToString()
        _, heldout_reference = samples.split(self.keras_probabilities)
        agreement = self.step(
            f"Checking int8 top-1 agreement with Keras on {len(heldout)} held-out images",
            lambda: parity.top1_agreement(
                heldout_reference, parity.onnx_probabilities(parity.onnx_session(int8_bytes), heldout)
            ),
        )
        figures = {
            "int8_top1_agreement": agreement,
            "int8_heldout_images": len(heldout),
            "int8_calibration": calibration_method,
        }
        if agreement < self.options.min_int8_agreement:
            raise CheckFailed(
                f"int8 gate failed: top-1 agreement with Keras {agreement:.2%} on {len(heldout)} held-out "
                f"images, below {self.options.min_int8_agreement:.0%}; nothing was registered",
                figures,
            )
        speed = self.step(
            "Measuring int8 speed against fp32 on this machine",
            lambda: quantization.speedup(fp32.SerializeToString(), int8_bytes, heldout),
        )
        figures |= {
            "fp32_ms": speed["fp32_ms"],
            "int8_ms": speed["int8_ms"],
            "int8_speedup": speed["speedup"],
        }
        version = self.step(
            f"Registering int8 as a new version of '{self.target}'",
            lambda: self._register(int8, "int8", figures, self.options.int8_alias, "int8"),
        )
        return Result("int8", version, "registered", self.options.int8_alias, figures)

    # Lazily computed pieces: a rerun that finds everything done loads none of them.

    @cached_property
    def keras_model(self):
        def load():
            keras_model.import_modules(list(self.options.imports))
            return keras_model.load(registry.model_uri(self.source), self.options.trust_lambda)

        return self.step(f"Loading Keras version {self.source.version}", load)

    @cached_property
    def input_spec(self) -> keras_model.InputSpec:
        return keras_model.input_spec(self.keras_model, self.options.input_size)

    @cached_property
    def compute_dtype(self) -> str:
        return keras_model.compute_dtype(self.keras_model)

    @property
    def precision(self) -> str:
        return keras_model.PRECISION_BY_COMPUTE_DTYPE[self.compute_dtype]

    @property
    def tolerance(self) -> float:
        if self.options.tolerance is not None:
            return self.options.tolerance
        return keras_model.TOLERANCE_BY_COMPUTE_DTYPE[self.compute_dtype]

    @cached_property
    def _scaling_choice(self) -> tuple[str, str]:
        """The input scaling and where it came from: the flag, the run's parameter, the model's own layers."""
        if self.options.input_scaling:
            return self.options.input_scaling, "--input-scaling"
        logged = registry.run_param(self.client, self.source, PREPROCESSING_PARAM)
        if logged:
            if logged not in preprocessing.MODES:
                raise InvalidInput(
                    f"the training run's param {PREPROCESSING_PARAM}={logged!r} is not a preprocessing mode "
                    f"({', '.join(sorted(preprocessing.MODES))}); pass --input-scaling"
                )
            return logged, f"run param {PREPROCESSING_PARAM}"
        if preprocessing.scales_itself(self.keras_model):
            return preprocessing.SELF_SCALING, "the model has its own Rescaling/Normalization"
        return preprocessing.DEFAULT, "default"

    @property
    def scaling(self) -> str:
        return self._scaling_choice[0]

    @property
    def scaling_origin(self) -> str:
        return self._scaling_choice[1]

    @cached_property
    def class_names(self) -> list[str]:
        return self.step(
            "Reading class names",
            lambda: registry.class_names(self.client, self.source, self.options.classes),
        )

    @cached_property
    def check_images(self) -> samples.CheckImages:
        folder = self.options.samples or registry.download_samples(
            self.client, self.source, Path(self._tmp.name)
        )
        return samples.check_images(folder, self.input_spec.size, self.class_names)

    @cached_property
    def keras_probabilities(self) -> np.ndarray:
        return parity.keras_probabilities(
            self.keras_model, self.check_images.pixels, self.scaling, self.input_spec.channels
        )

    def _export(self) -> onnx.ModelProto:
        provenance = export.Provenance(
            source_model=self.source.name,
            source_version=self.source.version,
            source_run_id=self.source.run_id,
            class_names=self.class_names,
            input_scaling=self.scaling,
            color_mode=self.input_spec.color_mode,
            precision=self.precision,
        )
        return export.to_onnx(self.keras_model, self.input_spec, provenance, self.options.opset)

    def _parity(self, model: onnx.ModelProto) -> parity.ParityReport:
        try:
            session = parity.onnx_session(model.SerializeToString())
        except Exception as exc:  # onnxruntime's own error classes; any of them means "cannot serve this"
            message = str(exc).splitlines()[0][:300]
            raise CheckFailed(
                f"onnxruntime cannot load the exported graph: {message}; nothing was registered"
            ) from exc
        onnx_probabilities = parity.onnx_probabilities(session, self.check_images.pixels)
        return parity.compare(self.keras_probabilities, onnx_probabilities, self.tolerance)

    def _registered_fp32(self) -> onnx.ModelProto:
        version = registry.existing_onnx(self.client, self.target, self.source, "fp32")
        return registry.download_onnx(version)

    def _register(self, model: onnx.ModelProto, precision: str, figures: dict, alias: str, kind: str) -> str:
        import tensorflow as tf
        import tf2onnx

        tags = {
            registry.FORMAT_TAG: "onnx",
            "precision": precision,
            "source_model": self.source.name,
            "source_version": self.source.version,
            "input_scaling": self.scaling,
            "color_mode": self.input_spec.color_mode,
            "compute_dtype": self.compute_dtype,
            "converter": f"tf2onnx {tf2onnx.__version__}",
            "tensorflow": tf.__version__,
            "onnx": onnx.__version__,
            "opset": str(self.options.opset),
            "onnxruntime": onnxruntime.__version__,
            "check_images": self.check_images.origin,
        } | {k: _tag_value(v) for k, v in figures.items()}
        metrics = {k: float(v) for k, v in figures.items() if isinstance(v, int | float)}
        version = registry.register_onnx(
            self.client, self.target, self.source, model, self.check_images.pixels[:1], tags, metrics
        )
        registry.publish(self.client, self.target, version, alias, self.source, kind)
        return version


def _tag_value(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _found(version) -> Result:
    """An ONNX version made by an earlier run, with the figures its tags recorded."""
    wanted = ("parity_", "int8_", "fp32_ms", "sample_")
    figures = {k: _number(v) for k, v in version.tags.items() if k.startswith(wanted)}
    alias = ", ".join(version.aliases) or None
    return Result(version.tags["precision"], str(version.version), "exists", alias, figures)


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text

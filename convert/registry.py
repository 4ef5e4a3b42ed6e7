"""The converter's view of MLflow: find the Keras source, its classes and samples; register ONNX versions."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import onnx
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from convert.errors import InvalidInput, NotFound, RegistryUnreachable
from convert.export import INPUT_NAME, OUTPUT_NAME

CLASS_INDICES = "class_indices.json"
SAMPLES_DIR = "samples"
FORMAT_TAG = "format"
# Tag on the Keras version that points at its ONNX version, one per precision.
ONNX_POINTER_TAG = {"fp32": "onnx_model_version", "int8": "onnx_int8_model_version"}


@dataclass(frozen=True)
class Source:
    """The Keras model version being converted."""

    name: str
    version: str
    run_id: str


def connect(tracking_uri: str | None) -> MlflowClient:
    """A client for the tracking server, after proving it answers (exit 3 if not, within seconds)."""
    # MLflow's default retry policy waits minutes before giving up on a dead server; a DAG task wants to know now.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise InvalidInput("no tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    guarded(lambda: client.search_registered_models(max_results=1), f"tracking server {uri}")
    return client


def guarded(call, what: str):
    """Run an MLflow call, turning 'not found' and refused arguments into exit 2 and 'no answer' into exit 3."""
    try:
        return call()
    except RestException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc):
            raise NotFound(f"{what} not found") from exc
        if exc.error_code == "INVALID_PARAMETER_VALUE":  # e.g. a version that is not a number
            raise InvalidInput(f"{what}: {_first_line(exc)}") from exc
        raise
    except MlflowException as exc:
        if "Max retries exceeded" in str(exc) or "failed with exception" in str(exc):
            raise RegistryUnreachable(f"{what} is unreachable: {_first_line(exc)}") from exc
        raise


def resolve_source(client: MlflowClient, name: str, version: str | None, alias: str | None) -> Source:
    """The version to convert: an explicit number, an alias, or the newest version that is a Keras model."""
    if version is not None:
        found = guarded(
            lambda: client.get_model_version(name, version), f"version {version} of model '{name}'"
        )
    elif alias is not None:
        found = guarded(
            lambda: client.get_model_version_by_alias(name, alias), f"alias '{alias}' of model '{name}'"
        )
    else:
        found = _newest_keras(client, name)
    if not is_keras(found):
        raise InvalidInput(f"version {found.version} of model '{name}' is not a Keras model")
    return Source(name=name, version=str(found.version), run_id=found.run_id or "")


def _newest_keras(client: MlflowClient, name: str) -> ModelVersion:
    guarded(lambda: client.get_registered_model(name), f"registered model '{name}'")
    for candidate in sorted(all_versions(client, name), key=lambda v: -int(v.version)):
        if candidate.tags.get(FORMAT_TAG) != "onnx" and is_keras(candidate):
            return candidate
    raise NotFound(f"registered model '{name}' has no Keras version")


def is_keras(version: ModelVersion) -> bool:
    if version.tags.get(FORMAT_TAG) == "onnx":
        return False
    info = mlflow.models.get_model_info(f"models:/{version.name}/{version.version}")
    return "keras" in info.flavors


def all_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    return list(client.search_model_versions(f"name='{name}'"))


def class_names(client: MlflowClient, source: Source, classes_file: Path | None) -> list[str]:
    """Class names in index order, from the run's class_indices.json, else from --classes."""
    if classes_file is None:
        if source.run_id and _has_artifact(client, source.run_id, CLASS_INDICES):
            with tempfile.TemporaryDirectory() as tmp:
                local = mlflow.artifacts.download_artifacts(
                    run_id=source.run_id, artifact_path=CLASS_INDICES, dst_path=tmp
                )
                return parse_class_indices(Path(local).read_text(), f"{CLASS_INDICES} of run {source.run_id}")
        raise NotFound(
            f"the training run of version {source.version} has no {CLASS_INDICES}; pass --classes FILE "
            '(a JSON object {"class_name": index})'
        )
    if not classes_file.is_file():
        raise NotFound(f"classes file {classes_file} does not exist")
    return parse_class_indices(classes_file.read_text(), str(classes_file))


def parse_class_indices(text: str, origin: str) -> list[str]:
    """{"class_name": index} -> names ordered by index; indices must be exactly 0..C-1."""
    try:
        indices = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{origin} is not JSON: {exc}") from exc
    if not isinstance(indices, dict) or not indices:
        raise InvalidInput(f'{origin} must be a non-empty JSON object {{"class_name": index}}')
    by_index = {index: name for name, index in indices.items() if type(index) is int}  # not bool, str, float
    if sorted(by_index) != list(range(len(indices))):
        raise InvalidInput(f"{origin}: indices must be the integers 0..{len(indices) - 1}, each once")
    return [by_index[i] for i in range(len(indices))]


def download_samples(client: MlflowClient, source: Source, dst: Path) -> Path | None:
    """The run's held-out sample images, if it logged any under samples/."""
    if not source.run_id or not _has_artifact(client, source.run_id, SAMPLES_DIR):
        return None
    return Path(
        mlflow.artifacts.download_artifacts(run_id=source.run_id, artifact_path=SAMPLES_DIR, dst_path=dst)
    )


def model_uri(source: Source) -> str:
    return f"models:/{source.name}/{source.version}"


def run_param(client: MlflowClient, source: Source, key: str) -> str | None:
    """A parameter the training run logged (the team's `preprocessing` mode), if any."""
    if not source.run_id:
        return None
    return guarded(lambda: client.get_run(source.run_id), f"run {source.run_id}").data.params.get(key)


def existing_onnx(client: MlflowClient, target: str, source: Source, kind: str) -> ModelVersion | None:
    """The ONNX version already made from this source, if any (newest first): kind 'int8' is the quantized
    one, 'fp32' the plain conversion, whatever precision the model computes in (fp32, or fp16 when it was built
    under mixed precision)."""
    try:
        versions = all_versions(client, target)
    except RestException:
        return None
    matches = [
        v
        for v in versions
        if v.tags.get(FORMAT_TAG) == "onnx"
        and v.tags.get("source_model") == source.name
        and v.tags.get("source_version") == source.version
        and (v.tags.get("precision") == "int8") == (kind == "int8")
        and v.status == "READY"
    ]
    newest = max(matches, key=lambda v: int(v.version), default=None)
    # search results leave aliases out; a direct read has them
    return client.get_model_version(target, newest.version) if newest else None


def download_onnx(version: ModelVersion) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}", dst_path=tmp)
        )
        return onnx.load(next(local.rglob("*.onnx")))


def register_onnx(
    client: MlflowClient,
    target: str,
    source: Source,
    model: onnx.ModelProto,
    example: np.ndarray,
    tags: dict[str, str],
    metrics: dict[str, float],
) -> str:
    """Log the ONNX model in a run of the source's experiment and register it as a new version, tags set
    atomically with the version so a half-done registration is never mistaken for a finished one."""
    height, width = example.shape[1:3]
    num_classes = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, height, width, 3), INPUT_NAME)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes), OUTPUT_NAME)]),
    )
    experiment_id = client.get_run(source.run_id).info.experiment_id if source.run_id else None
    run_name = f"onnx-{tags['precision']}-from-{source.name}-v{source.version}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name):
        mlflow.log_params(
            {
                k: tags[k]
                for k in ("source_model", "source_version", "precision", "input_scaling", "color_mode")
            }
        )
        mlflow.log_metrics(metrics)
        logged = mlflow.onnx.log_model(
            model,
            name="model",
            signature=signature,
            input_example={INPUT_NAME: example},
            save_as_external_data=False,
        )
    created = mlflow.register_model(logged.model_uri, target, await_registration_for=300, tags=tags)
    description = f"ONNX ({tags['precision']}) of {source.name} version {source.version}"
    client.update_model_version(target, created.version, description=description)
    return str(created.version)


def publish(client: MlflowClient, target: str, version: str, alias: str, source: Source, kind: str):
    """Move the alias to the new version and point the Keras version at it. The pointer is set last: a run
    interrupted before it left a version that a rerun finds unpublished, and publishes."""
    client.set_registered_model_alias(target, alias, version)
    client.set_model_version_tag(
        source.name, source.version, ONNX_POINTER_TAG[kind], _pointer(target, version, source)
    )
    client.set_model_version_tag(source.name, source.version, FORMAT_TAG, "keras")


def is_published(client: MlflowClient, target: str, version: str, source: Source, kind: str) -> bool:
    """Whether a run got as far as pointing the Keras version at this ONNX version."""
    tags = client.get_model_version(source.name, source.version).tags
    return tags.get(ONNX_POINTER_TAG[kind]) == _pointer(target, version, source)


def _pointer(target: str, version: str, source: Source) -> str:
    return version if target == source.name else f"{target}/{version}"


def _has_artifact(client: MlflowClient, run_id: str, path: str) -> bool:
    parent = str(Path(path).parent) if "/" in path else None
    return any(f.path == path for f in client.list_artifacts(run_id, parent))


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]

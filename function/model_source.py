"""Where the ONNX file comes from: a local path, or an MLflow registry URI downloaded once into a cache.

A start with the registry unreachable serves the version cached for the same URI, and says so."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
ALIAS_TIMEOUT_S = 5
URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelUnavailable(RuntimeError):
    """No model can be served: the registry is unreachable and nothing is cached, or the URI is wrong."""


@dataclass(frozen=True)
class ModelSource:
    path: Path
    uri: str
    name: str
    version: str
    alias: str | None
    from_cache: bool = False  # True when the registry could not be asked and a cached copy serves


def fetch(uri: str, tracking_uri: str | None, cache_dir: Path) -> ModelSource:
    match = URI.match(uri)
    if not match:
        return _local(uri)
    name, alias, version = match["name"], match["alias"], match["version"]
    pointer = cache_dir / (re.sub(r"[^A-Za-z0-9._-]+", "_", uri) + ".json")
    try:
        version = version or _resolve_alias(tracking_uri, name, alias)
        path = _download(tracking_uri, name, version, cache_dir)
    except _RegistryDown as exc:
        if not pointer.exists():
            raise ModelUnavailable(
                f"the MLflow registry is unreachable ({exc}) and no copy of {uri} is cached"
            ) from exc
        cached = json.loads(pointer.read_text())
        log.warning("registry unreachable (%s): serving cached version %s of %s", exc, cached["version"], uri)
        return ModelSource(Path(cached["path"]), uri, name, cached["version"], alias, from_cache=True)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"version": version, "path": str(path)}))
    return ModelSource(path, uri, name, version, alias)


class _RegistryDown(Exception):
    pass


def _local(uri: str) -> ModelSource:
    path = Path(uri.removeprefix("file://"))
    if path.is_dir():
        found = sorted(path.rglob("*.onnx"))
        if len(found) != 1:
            raise ModelUnavailable(f"{path} holds {len(found)} .onnx files; point MODEL_URI at one")
        path = found[0]
    if not path.is_file():
        raise ModelUnavailable(
            f"MODEL_URI {uri} is neither models:/NAME@ALIAS, models:/NAME/VERSION nor a file"
        )
    return ModelSource(path, uri, path.stem, "local", None)


def _mlflow_settings() -> None:
    # Knative restarts are cheap; waiting minutes on MLflow's default retries is not.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def _call(what: str, call):
    from mlflow.exceptions import MlflowException, RestException

    try:
        return call()
    except RestException as exc:
        raise ModelUnavailable(f"{what}: {str(exc).splitlines()[0]}") from exc
    except MlflowException as exc:
        raise _RegistryDown(str(exc).splitlines()[0][:200]) from exc


def _resolve_alias(tracking_uri: str | None, name: str, alias: str) -> str:
    """One REST call, without importing mlflow (about 1.5 s of a cold start): with the version cached, a
    start never imports it at all."""
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        raise ModelUnavailable(
            "a models:/ MODEL_URI needs MLFLOW_TRACKING_URI set to the registry's http(s) URL"
        )
    query = urllib.parse.urlencode({"name": name, "alias": alias})
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias?{query}"
    try:
        with urllib.request.urlopen(url, timeout=ALIAS_TIMEOUT_S) as response:
            return str(json.load(response)["model_version"]["version"])
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 404):
            raise ModelUnavailable(f"alias '{alias}' of '{name}' not found in the registry") from exc
        raise _RegistryDown(f"the registry answered {exc.code}") from exc
    except (OSError, ValueError, KeyError) as exc:  # refused, timed out, or not an MLflow answer
        raise _RegistryDown(str(exc)[:200]) from exc


def _download(tracking_uri: str | None, name: str, version: str, cache_dir: Path) -> Path:
    target = cache_dir / name / version / "model.onnx"
    if target.exists():
        return target
    _mlflow_settings()
    import mlflow  # a cache miss only: the first start on a new version

    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(dir=_mkdir(cache_dir)) as tmp:
        local = _call(
            f"version {version} of '{name}'",
            lambda: mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp),
        )
        found = sorted(Path(local).rglob("*.onnx"))
        if len(found) != 1:
            raise ModelUnavailable(f"version {version} of '{name}' is not one ONNX file (found {len(found)})")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(found[0], target)  # same filesystem: an atomic rename, never a half-written cache entry
    return target


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

"""Where the ONNX file comes from: a local path, or an MLflow registry URI downloaded once into a cache.

The registry is read over MLflow's REST API and its artifact proxy, without the MLflow client.

A start with the registry unreachable serves the version cached for the same URI, and says so. An image may
carry a read-only copy of a version (`Registry.baked`, filled at build time by `python -m function.model_source`):
it is read instead of downloading that version, and serves when the registry is unreachable.

The cache on disk (checksums, records, whole writes) is `function.model_cache`: a copy that a disk, a volume copy
or a person has damaged is downloaded again, or named in the error when it cannot be."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from function import model_cache

log = logging.getLogger(__name__)
# Socket timeouts bound each connect and read; a deadline bounds a whole answer, since a registry (or a proxy in
# front of it) that sends a byte now and then never trips a socket timeout. With a version cached, a start asks
# the registry one question (the alias), so it settles within REST_TIMEOUT_S + REST_DEADLINE_S whatever the
# registry does.
REST_TIMEOUT_S = 5
REST_DEADLINE_S = 10
DOWNLOAD_TIMEOUT_S = 60
DOWNLOAD_DEADLINE_S = 600
PROXY = "/api/2.0/mlflow-artifacts/artifacts"
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


@dataclass(frozen=True)
class Registry:
    """The MLflow tracking server and MLflow's own credential variables (read once, into Settings), and the
    read-only copy of registry versions an image may carry (`baked`: the cache's layout, made at build time)."""

    url: str | None
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    baked: Path | None = None

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username and self.password:
            basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        return {}

    def __str__(self) -> str:
        return self.url or "no registry"


def fetch(uri: str, registry: Registry, cache_dir: Path) -> ModelSource:
    match = URI.match(uri)
    if not match:
        return _local(uri)
    name, alias, version = match["name"], match["alias"], match["version"]
    record = model_cache.record_name(uri)
    try:
        version = version or _resolve_alias(registry, name, alias)
        path = _baked(registry, name, version) or _download(registry, name, version, cache_dir)
    except _RegistryDown as exc:
        # What this pod fetched is newer news from the registry than the image's copy, which serves a fresh pod.
        return _cached(uri, name, alias, [f / record for f in (cache_dir, registry.baked) if f], exc)
    model_cache.remember(cache_dir / record, version, path)
    return ModelSource(path, uri, name, version, alias)


def _cached(uri: str, name: str, alias: str | None, records: list[Path], down: Exception) -> ModelSource:
    """The version an earlier start resolved `uri` to, from the first of `records` whose file is intact."""
    unusable = []
    for record in records:
        try:
            version, path = model_cache.recalled(record)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            unusable.append(f"the record {record} is unreadable ({exc!r})")
            continue
        if damage := model_cache.damage(path):
            unusable.append(f"the cached copy of version {version} is damaged ({damage})")
            continue
        log.warning("registry unreachable (%s): serving cached version %s of %s", down, version, uri)
        return ModelSource(path, uri, name, version, alias, from_cache=True)
    found = "; ".join(unusable) or f"no copy of {uri} is cached"
    raise ModelUnavailable(f"the MLflow registry is unreachable ({down}) and {found}") from down


def _baked(registry: Registry, name: str, version: str) -> Path | None:
    """The image's own copy of this version, if it has one: read from the image's layer, not downloaded."""
    path = registry.baked / name / version / "model.onnx" if registry.baked else None
    if not path or not path.is_file():
        return None
    if damage := model_cache.damage(path):
        log.warning("the image's copy of version %s of '%s' is damaged (%s): not used", version, name, damage)
        return None
    return path


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


def _resolve_alias(registry: Registry, name: str, alias: str) -> str:
    query = urllib.parse.urlencode({"name": name, "alias": alias})
    return _registry_field(
        registry,
        f"/api/2.0/mlflow/registered-models/alias?{query}",
        ("model_version", "version"),
        f"alias '{alias}' of '{name}' not found in the registry",
    )


def _download(registry: Registry, name: str, version: str, cache_dir: Path) -> Path:
    """A cache miss: the first start on a new version. The file comes through the tracking server's artifact
    proxy (`mlflow server` serves artifacts by default), so the function needs no MLflow client: that keeps
    its image slim and its start fast (the client's pydantic alone would add about 90 ms to every start)."""
    target = cache_dir / name / version / "model.onnx"
    if target.exists():
        if not (damage := model_cache.damage(target)):
            return target
        log.warning("the cached copy of version %s of '%s' is damaged (%s): downloading it again", version, name,
                    damage)  # fmt: skip
    query = urllib.parse.urlencode({"name": name, "version": version})
    artifact_uri = _registry_field(
        registry,
        f"/api/2.0/mlflow/model-versions/get-download-uri?{query}",
        ("artifact_uri",),
        f"version {version} of '{name}' not found in the registry",
    )
    try:
        with tempfile.TemporaryDirectory(dir=model_cache.mkdir(cache_dir)) as tmp:
            downloaded = _fetch_onnx(registry, artifact_uri, Path(tmp), f"version {version} of '{name}'")
            model_cache.keep(downloaded, target)
    except OSError as exc:  # registry reads raise _RegistryDown, so this is the cache's own disk
        raise ModelUnavailable(f"cannot write the model cache under {cache_dir}: {exc}") from exc
    return target


def _fetch_onnx(registry: Registry, artifact_uri: str, tmp: Path, what: str) -> Path:
    """The one .onnx file at the top of a model version's artifacts, copied into `tmp`."""
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme == "mlflow-artifacts":
        folder = parsed.path.strip("/")
        listing = _get_json(registry, f"{PROXY}?{urllib.parse.urlencode({'path': folder})}")
        files = [f for f in listing.get("files", []) if not f.get("is_dir") and f["path"].endswith(".onnx")]
        if len(files) != 1:
            raise ModelUnavailable(f"{what} is not one ONNX file (found {len(files)})")
        name = files[0]["path"].rsplit("/", 1)[-1]
        url = f"{PROXY}/{urllib.parse.quote(f'{folder}/{name}')}"
        return _download_file(registry, url, tmp / "model.onnx", files[0].get("file_size"))
    if parsed.scheme in ("", "file"):  # a registry whose artifacts sit on a filesystem this container mounts
        folder = Path(urllib.parse.unquote(parsed.path))
        found = sorted(folder.glob("*.onnx"))
        if len(found) != 1:
            raise ModelUnavailable(f"{what} is not one ONNX file in {folder} (found {len(found)})")
        return Path(shutil.copy(found[0], tmp / "model.onnx"))
    return _fetch_with_mlflow(registry, artifact_uri, tmp, what)


def _fetch_with_mlflow(registry: Registry, artifact_uri: str, tmp: Path, what: str) -> Path:
    """Artifacts the tracking server does not proxy (s3://, gs://, ...): only MLflow's client can read every
    store, so it is an optional extra rather than a dependency of every image."""
    try:
        import mlflow
    except ImportError as exc:
        raise ModelUnavailable(
            f"{what} is stored at {artifact_uri}, which the tracking server does not proxy; run `mlflow server` "
            "with artifact serving on (its default), or install the `registry-client` extra"
        ) from exc
    # The MLflow client takes its settings from the environment only (credentials included, which it reads
    # itself): this optional path is the one place the function writes there. Knative restarts are cheap;
    # minutes of retries against a dead store are not.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    mlflow.set_tracking_uri(registry.url)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri, dst_path=str(tmp)))
    except Exception as exc:  # whatever the store's client raises: the registry's storage is unreachable
        raise _RegistryDown(str(exc).splitlines()[0][:200]) from exc
    found = sorted(local.rglob("*.onnx"))
    if len(found) != 1:
        raise ModelUnavailable(f"{what} is not one ONNX file (found {len(found)})")
    return found[0]


class _NotFound(ModelUnavailable):
    pass


def _download_file(registry: Registry, path: str, target: Path, listed_size) -> Path:
    """Stream to `target`; a download cut short is the registry's failure, never a cache entry."""
    with _open(registry, path, DOWNLOAD_TIMEOUT_S) as response, target.open("wb") as out:
        expected = int(response.headers.get("Content-Length") or listed_size or -1)
        for chunk in _chunks(response, DOWNLOAD_DEADLINE_S):
            out.write(chunk)
        written = out.tell()
    if expected >= 0 and written != expected:
        raise _RegistryDown(
            f"the download of {path.rsplit('/', 1)[-1]} stopped at {written} of {expected} bytes"
        )
    return target


def _registry_field(registry: Registry, path: str, keys: tuple[str, ...], not_found: str) -> str:
    """One field of a registry answer: `not_found` if the registry says so, "down" if it is not an answer."""
    try:
        answer = _get_json(registry, path)
        for key in keys:
            answer = answer[key]
        return str(answer)
    except _NotFound as exc:
        raise ModelUnavailable(not_found) from exc
    except (KeyError, TypeError) as exc:
        raise _RegistryDown(f"{registry} did not answer as an MLflow registry") from exc


def _get_json(registry: Registry, path: str):
    with _open(registry, path, REST_TIMEOUT_S) as response:
        body = b"".join(_chunks(response, REST_DEADLINE_S))
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _RegistryDown(f"{registry} did not answer as an MLflow registry") from exc


def _chunks(response, deadline_s: float) -> Iterator[bytes]:
    """The body as it arrives (`read1`: whatever one read gets, so the deadline is checked between reads)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            chunk = response.read1(1 << 20)
        except (OSError, http.client.HTTPException) as exc:  # reset, timed out, cut-off chunked body
            raise _RegistryDown(f"reading the registry's answer failed: {exc!r}"[:200]) from exc
        if not chunk:
            return
        yield chunk
        if time.monotonic() > deadline:
            raise _RegistryDown(f"the registry's answer did not finish within {deadline_s} s")


@contextlib.contextmanager
def _open(registry: Registry, path: str, timeout_s: float):
    """GET from the tracking server, with MLflow's own credentials variables. Only opening is guarded here:
    errors raised in the caller's with-block (reads, local writes) are the caller's to name."""
    if not registry.url or not registry.url.startswith(("http://", "https://")):
        raise ModelUnavailable(
            "a models:/ MODEL_URI needs MLFLOW_TRACKING_URI set to the registry's http(s) URL"
        )
    request = urllib.request.Request(f"{registry.url.rstrip('/')}{path}", headers=registry.headers())
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 404):  # MLflow answers RESOURCE_DOES_NOT_EXIST with one of these
            raise _NotFound(str(exc)) from exc
        if exc.code in (401, 403):  # like a registry that is down: a cached version may still serve
            raise _RegistryDown(
                f"the registry refused access ({exc.code}): set MLFLOW_TRACKING_TOKEN, or "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            ) from exc
        raise _RegistryDown(f"the registry answered {exc.code}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:  # refused, timed out, bad URL or answer
        raise _RegistryDown(str(exc)[:200]) from exc
    with response:
        yield response


def main(argv: list[str] | None = None) -> None:
    """Bake a registry version into an image at build time: `python -m function.model_source MODEL_URI FOLDER`
    writes the cache's layout into FOLDER, which the image names in MODEL_BAKED_DIR. The registry and its
    credentials come from the same variables as at run time."""
    import sys

    from function.settings import Settings  # settings imports this module, so not at the top

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: python -m function.model_source MODEL_URI FOLDER")
    uri, folder = args
    try:
        source = fetch(uri, Settings.from_env(os.environ).registry, Path(folder))
    except ModelUnavailable as exc:
        sys.exit(f"cannot bake {uri}: {exc}")
    print(f"baked {source.uri}: {source.name} version {source.version} at {source.path}")


if __name__ == "__main__":
    main()

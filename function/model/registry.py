"""The MLflow registry, read over its REST API and artifact proxy, without the MLflow client: an alias resolved to
a version, a version's artifact location, and its one ONNX file fetched into a folder.

Failures come in two kinds, which the caller treats differently: `ModelUnavailable` (the registry answered: no
such alias or version, not one ONNX file, no tracking URI) and `RegistryDown` (no usable answer: refused,
timed out, cut short, not MLflow, credentials refused), where a cached copy may still serve."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from function.settings import Settings

# Socket timeouts bound each connect and read; a deadline bounds a whole answer, since a registry (or a proxy in
# front of it) that sends a byte now and then never trips a socket timeout. With a version cached, a start asks
# the registry one question (the alias), so it settles within REST_TIMEOUT_S + REST_DEADLINE_S whatever the
# registry does.
REST_TIMEOUT_S = 5
REST_DEADLINE_S = 10
DOWNLOAD_TIMEOUT_S = 60
DOWNLOAD_DEADLINE_S = 600
PROXY = "/api/2.0/mlflow-artifacts/artifacts"


class _CredentialsStayHome(urllib.request.HTTPRedirectHandler):
    """Redirects followed as urllib follows them, except that the registry's credentials never leave its origin: a
    redirect to another host (a store's presigned URL, say) is followed without them (urllib would copy them)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        redirected = super().redirect_request(req, fp, code, msg, headers, newurl)
        if redirected is not None and _origin(newurl) != _origin(req.full_url):
            redirected.remove_header("Authorization")
        return redirected


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urllib.parse.urlsplit(url)
    return (
        parts.scheme.lower(),
        parts.hostname,
        parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower()),
    )


_OPENER = urllib.request.build_opener(_CredentialsStayHome)


class ModelUnavailable(RuntimeError):
    """No model can be served: the registry is unreachable and nothing is cached, or the URI is wrong."""


class RegistryDown(Exception):
    """The registry gave no usable answer: a cached copy may serve instead."""


class NotFound(ModelUnavailable):
    pass


@dataclass(frozen=True)
class Registry:
    """The MLflow tracking server and MLflow's own credential variables (read once, into Settings), and the
    read-only copy of registry versions an image may carry (`baked`: the cache's layout, made at build time)."""

    url: str | None
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    baked: Path | None = None

    @classmethod
    def of(cls, settings: Settings) -> Registry:
        return cls(settings.tracking_uri, settings.tracking_token, settings.tracking_username,
                   settings.tracking_password, settings.baked_dir)  # fmt: skip

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username and self.password:
            basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        return {}

    def __str__(self) -> str:
        return self.url or "no registry"


def resolve_alias(registry: Registry, name: str, alias: str) -> str:
    query = urllib.parse.urlencode({"name": name, "alias": alias})
    return _field(
        registry,
        f"/api/2.0/mlflow/registered-models/alias?{query}",
        ("model_version", "version"),
        f"alias '{alias}' of '{name}' not found in the registry",
    )


def set_alias(registry: Registry, name: str, alias: str, version: str) -> None:
    """Point `alias` of `name` at `version` (what `fish-rollout --apply` does on promote or rollback)."""
    if not registry.url or not registry.url.startswith(("http://", "https://")):
        raise ModelUnavailable("moving an alias needs MLFLOW_TRACKING_URI set to the registry's http(s) URL")
    body = json.dumps({"name": name, "alias": alias, "version": version}).encode()
    request = urllib.request.Request(
        f"{registry.url.rstrip('/')}/api/2.0/mlflow/registered-models/alias", data=body, method="POST",
        headers={**registry.headers(), "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with _OPENER.open(request, timeout=REST_TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 404):
            raise ModelUnavailable(f"version {version} of '{name}' not found in the registry") from exc
        raise RegistryDown(f"the registry answered {exc.code}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RegistryDown(str(exc)[:200]) from exc


def artifact_uri(registry: Registry, name: str, version: str) -> str:
    query = urllib.parse.urlencode({"name": name, "version": version})
    return _field(
        registry,
        f"/api/2.0/mlflow/model-versions/get-download-uri?{query}",
        ("artifact_uri",),
        f"version {version} of '{name}' not found in the registry",
    )


def fetch_onnx(registry: Registry, artifact_uri: str, tmp: Path, what: str) -> Path:
    """The one .onnx file at the top of a model version's artifacts, copied into `tmp`. The file comes through
    the tracking server's artifact proxy (`mlflow server` serves artifacts by default), so the function needs no
    MLflow client: that keeps its image slim and its start fast."""
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
        raise RegistryDown(str(exc).splitlines()[0][:200]) from exc
    found = sorted(local.rglob("*.onnx"))
    if len(found) != 1:
        raise ModelUnavailable(f"{what} is not one ONNX file (found {len(found)})")
    return found[0]


def _download_file(registry: Registry, path: str, target: Path, listed_size) -> Path:
    """Stream to `target`; a download cut short is the registry's failure, never a cache entry."""
    with _open(registry, path, DOWNLOAD_TIMEOUT_S) as response, target.open("wb") as out:
        expected = int(response.headers.get("Content-Length") or listed_size or -1)
        for chunk in _chunks(response, DOWNLOAD_DEADLINE_S):
            out.write(chunk)
        written = out.tell()
    if expected >= 0 and written != expected:
        raise RegistryDown(
            f"the download of {path.rsplit('/', 1)[-1]} stopped at {written} of {expected} bytes"
        )
    return target


def _field(registry: Registry, path: str, keys: tuple[str, ...], not_found: str) -> str:
    """One field of a registry answer: `not_found` if the registry says so, "down" if it is not an answer."""
    try:
        answer = _get_json(registry, path)
        for key in keys:
            answer = answer[key]
        return str(answer)
    except NotFound as exc:
        raise ModelUnavailable(not_found) from exc
    except (KeyError, TypeError) as exc:
        raise RegistryDown(f"{registry} did not answer as an MLflow registry") from exc


def _get_json(registry: Registry, path: str):
    with _open(registry, path, REST_TIMEOUT_S) as response:
        body = b"".join(_chunks(response, REST_DEADLINE_S))
    try:
        return json.loads(body)
    except ValueError as exc:
        raise RegistryDown(f"{registry} did not answer as an MLflow registry") from exc


def _chunks(response, deadline_s: float) -> Iterator[bytes]:
    """The body as it arrives (`read1`: whatever one read gets, so the deadline is checked between reads)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            chunk = response.read1(1 << 20)
        except (OSError, http.client.HTTPException) as exc:  # reset, timed out, cut-off chunked body
            raise RegistryDown(f"reading the registry's answer failed: {exc!r}"[:200]) from exc
        if not chunk:
            return
        yield chunk
        if time.monotonic() > deadline:
            raise RegistryDown(f"the registry's answer did not finish within {deadline_s} s")


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
        response = _OPENER.open(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 404):  # MLflow answers RESOURCE_DOES_NOT_EXIST with one of these
            raise NotFound(str(exc)) from exc
        if exc.code in (401, 403):  # like a registry that is down: a cached version may still serve
            raise RegistryDown(
                f"the registry refused access ({exc.code}): set MLFLOW_TRACKING_TOKEN, or "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            ) from exc
        raise RegistryDown(f"the registry answered {exc.code}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:  # refused, timed out, bad URL or answer
        raise RegistryDown(str(exc)[:200]) from exc
    with response:
        yield response

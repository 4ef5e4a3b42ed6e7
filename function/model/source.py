"""Where the ONNX file comes from: a local path, or an MLflow registry URI downloaded once into a cache.

A start with the registry unreachable serves the version cached for the same URI, and says so. An image may
carry a read-only copy of a version (`Registry.baked`, filled at build time by `python -m function.model.bake`):
it is read instead of downloading that version, and serves when the registry is unreachable.

The registry is `function.model.registry` (MLflow's REST API); the cache on disk (checksums, records, whole
writes) is `function.model.cache`: a copy that a disk, a volume copy or a person has damaged is downloaded again,
or named in the error when it cannot be."""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from function.model import cache
from function.model import registry as rest
from function.model.registry import ModelUnavailable, Registry, RegistryDown

log = logging.getLogger(__name__)
URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class ModelSource:
    path: Path
    uri: str
    name: str
    version: str
    alias: str | None
    from_cache: bool = False  # True when the registry could not be asked and a cached copy serves


def fetch(uri: str, registry: Registry, cache_dir: Path) -> ModelSource:
    match = URI.match(uri)
    if not match:
        return _local(uri)
    name, alias, version = match["name"], match["alias"], match["version"]
    record = cache.record_name(uri)
    try:
        version = version or rest.resolve_alias(registry, name, alias)
        path = _baked(registry, name, version) or _download(registry, name, version, cache_dir)
    except RegistryDown as exc:
        # What this pod fetched is newer news from the registry than the image's copy, which serves a fresh pod.
        return _cached(uri, name, alias, [f / record for f in (cache_dir, registry.baked) if f], exc)
    cache.remember(cache_dir / record, version, path)
    return ModelSource(path, uri, name, version, alias)


def _cached(uri: str, name: str, alias: str | None, records: list[Path], down: Exception) -> ModelSource:
    """The version an earlier start resolved `uri` to, from the first of `records` whose file is intact."""
    unusable = []
    for record in records:
        try:
            version, path = cache.recalled(record)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            unusable.append(f"the record {record} is unreadable ({exc!r})")
            continue
        if damage := cache.damage(path):
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
    if damage := cache.damage(path):
        log.warning("the image's copy of version %s of '%s' is damaged (%s): not used", version, name, damage)
        return None
    return path


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


def _download(registry: Registry, name: str, version: str, cache_dir: Path) -> Path:
    """A cache miss: the first start on a new version (the MLflow client's pydantic alone would add about 90 ms
    to every start, so the registry is read over REST)."""
    target = cache_dir / name / version / "model.onnx"
    if target.exists():
        if not (damage := cache.damage(target)):
            return target
        log.warning("the cached copy of version %s of '%s' is damaged (%s): downloading it again", version, name,
                    damage)  # fmt: skip
    artifacts = rest.artifact_uri(registry, name, version)
    try:
        with tempfile.TemporaryDirectory(dir=cache.mkdir(cache_dir)) as tmp:
            downloaded = rest.fetch_onnx(registry, artifacts, Path(tmp), f"version {version} of '{name}'")
            cache.keep(downloaded, target)
    except OSError as exc:  # registry reads raise RegistryDown, so this is the cache's own disk
        raise ModelUnavailable(f"cannot write the model cache under {cache_dir}: {exc}") from exc
    return target

"""The model cache on disk. Each model file has its SHA-256 and size beside it (`model.onnx.sha256`), checked
whenever it is used; a record per registry URI (`models_NAME_ALIAS.json`) says which version it last resolved to,
for a start with the registry unreachable; every write is whole or absent."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def record_name(uri: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", uri) + ".json"


def recalled(record: Path) -> tuple[str, Path]:
    """The version and file a record names. Raises FileNotFoundError (no record), OSError, or ValueError, KeyError
    or TypeError (a record that is not one)."""
    cached = json.loads(record.read_text())
    return str(cached["version"]), record.parent / cached["path"]  # relative, or absolute


def remember(record: Path, version: str, path: Path) -> None:
    """Which version the URI resolved to, for a start with the registry unreachable. Not writing it (a full or
    read-only disk) costs only that fallback, not this start."""
    # Relative to the record's folder when the file is in it, so a cache moved or mounted elsewhere (a volume)
    # still finds its files; a file elsewhere (the image's copy, for a record in the cache) keeps its absolute path.
    stored = path.relative_to(record.parent) if path.is_relative_to(record.parent) else path
    content = json.dumps({"version": version, "path": str(stored)}).encode()
    try:
        if not record.exists() or record.read_bytes() != content:
            write_whole(record, content)
    except OSError as exc:
        log.warning("cannot record version %s in the model cache (%s): a start with the registry unreachable "
                    "will not find it", version, exc)  # fmt: skip


def keep(downloaded: Path, target: Path) -> None:
    """A downloaded file into the cache at `target`, with its sums: the sums first, so a crash between the two
    leaves a mismatch (a download next time), never a file taken for whole that is not."""
    write_whole(sums(target), f"{sha256(downloaded)} {downloaded.stat().st_size}\n".encode())
    downloaded.replace(target)  # same filesystem: an atomic rename, never a half-written cache entry


def damage(path: Path) -> str | None:
    """What is wrong with a cached model file, or None: it has the size and SHA-256 it was downloaded with. (A file
    cached before checksums were kept has none to check; onnxruntime still checks its structure.)"""
    try:
        expected_sha256, expected_size = sums(path).read_text().split()
    except FileNotFoundError:
        return None if path.is_file() else "the file is missing"
    except (OSError, ValueError) as exc:
        return f"its checksum file is unreadable: {exc}"
    try:
        size = path.stat().st_size
        if size != int(expected_size):
            return f"it has {size} bytes, not the {expected_size} it was downloaded with"
        if sha256(path) != expected_sha256:
            return "its bytes changed since it was downloaded: the SHA-256 differs"
    except OSError as exc:
        return f"it cannot be read: {exc}"
    return None


def sums(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def write_whole(path: Path, data: bytes) -> None:
    """All of `data` or nothing: a full disk or a crash leaves the old file (or none), never half of the new."""
    mkdir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp makes the file 0600: a cache baked into an image by root must stay readable by the user the
        # container runs as (10001), as every other cached file is
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

"""Bake a registry version into an image at build time: `python -m function.model.bake MODEL_URI FOLDER` writes
the model cache's layout into FOLDER, which the image names in MODEL_BAKED_DIR. The registry and its credentials
come from the same variables as at run time."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from function.model.registry import ModelUnavailable, Registry
from function.model.source import fetch
from function.settings import Settings


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: python -m function.model.bake MODEL_URI FOLDER")
    uri, folder = args
    try:
        source = fetch(uri, Registry.of(Settings.from_env(os.environ)), Path(folder))
    except ModelUnavailable as exc:
        sys.exit(f"cannot bake {uri}: {exc}")
    print(f"baked {source.uri}: {source.name} version {source.version} at {source.path}")


if __name__ == "__main__":
    main()

"""Modules the web stack imports at start but that a request to this function may never use: their import is
deferred to their first attribute access (the standard library's `importlib.util.LazyLoader`), so they cost the
cold start nothing. Installed by `function.__main__` before anything else is imported.

Only modules listed here are deferred, each for a reason measured with `python -X importtime`: deferring a
module that is touched at start anyway gains nothing (Litestar's `pdb`, and `annotated_types`, which its
signature parsing reads when the app is built), and one imported with `from module import name` (uvicorn's
`click`, `configparser`) is loaded by that statement."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

DEFERRED = {
    # Litestar's OpenAPI plugins import it to render /schema/openapi.yaml, which this function's routes never
    # serve at start (~13 ms of imports, with its C loader and resolver tables).
    "yaml": "only /schema/openapi.yaml renders YAML",
}


class _DeferringFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def install() -> None:
    """Defer the modules in DEFERRED for this process (idempotent)."""
    if not any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder())

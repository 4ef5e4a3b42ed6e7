"""A wheel carries the web UI and the API documentation's Swagger UI: building one copies the files the function
serves (function/http/collect_web.py lists them) from web/, after `npm ci` there, into the package as
function/http/web_ui/, which the function serves when no WEB_DIR is set. Everything else is in pyproject.toml.

An editable install (`pip install -e .`) copies nothing: it serves the checkout's web/ itself. An sdist carries
the same files under web/, so a wheel built from it carries them too. BUILD_WEB_UI=off builds a wheel without
them (an API-only function: `/` is then a 404 that says so, and /schema/swagger names the OpenAPI document)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"
PACKAGED = Path("function", "http", "web_ui")  # function.http.web_files.PACKAGED_WEB


def collect_web():
    """function/http/collect_web.py, loaded by its path: importing the package would import Litestar, which the
    build's own environment does not have."""
    spec = importlib.util.spec_from_file_location(
        "collect_web", ROOT / "function" / "http" / "collect_web.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wanted() -> bool:
    value = os.environ.get("BUILD_WEB_UI", "on").strip().lower()
    if value not in ("on", "off"):
        raise SystemExit(f"BUILD_WEB_UI must be on or off, not {value!r}")
    return value == "on"


def collect_into(target: Path) -> None:
    web = collect_web()
    if missing := web.missing(WEB):
        raise SystemExit(
            f"The wheel carries the web UI, and {WEB} lacks {len(missing)} of its files ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): run `npm ci` in web/ first (`./taskw web`), or build "
            "with BUILD_WEB_UI=off for a wheel without the page and the API documentation's Swagger UI."
        )
    shutil.rmtree(target, ignore_errors=True)  # a file an earlier build collected is not carried on
    web.collect(WEB, target)


class BuildPyWithWebUI(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode and wanted():
            collect_into(Path(self.build_lib) / PACKAGED)


class SdistWithWebUI(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        if wanted():
            collect_into(Path(base_dir) / "web")


setup(cmdclass={"build_py": BuildPyWithWebUI, "sdist": SdistWithWebUI})

"""The function installed from its wheel, not from the repository: a wheel built from the checkout (after `npm ci`
in web/) carries the web UI and the API documentation's Swagger UI (setup.py), and `python -m function`, installed
with the `function` extra into a fresh venv and started outside the checkout, serves the page, its npm files and
the docs' files. A build without web/node_modules stops and says what to run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from convert.demo.mlflow_server import free_port
from tests import tiny_onnx
from tests.test_function_process import wait_ready

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "web" / "node_modules"
pytestmark = pytest.mark.skipif(
    not (NODE_MODULES / "swagger-ui-dist").exists(), reason="npm ci in web/ first"
)


def source_tree(target: Path, node_modules: bool) -> Path:
    """What a clone holds (the build writes build/ and *.egg-info beside its sources: not into the shared
    checkout), with web/node_modules as `npm ci` leaves it, or without it."""
    ignore = shutil.ignore_patterns("__pycache__", "node_modules")
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md", "function", "convert", "web"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=ignore)
        elif (ROOT / name).exists():
            shutil.copy(ROOT / name, target / name)
    if node_modules:
        (target / "web" / "node_modules").symlink_to(NODE_MODULES)
    return target


def build_wheel(source: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel and its `function` extra: its python."""
    work = tmp_path_factory.mktemp("wheel")
    built = build_wheel(source_tree(work / "src", node_modules=True), work / "dist")
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("fish_function-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    python = work / "venv" / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[function]"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return python


@pytest.fixture
def function(installed, tmp_path):
    """`python -m function` from the venv, started in a folder outside the checkout, with no path back into it."""
    model = tiny_onnx.build(tmp_path / "tiny.onnx")
    unset = ("PYTHONPATH", "WEB_DIR", "WEB_UI")
    env = {name: value for name, value in os.environ.items() if name not in unset}
    for _ in range(3):
        port = free_port()
        env.update(PORT=str(port), MODEL_URI=str(model), SHUTDOWN_DRAIN_SECONDS="0")
        command = [str(installed), "-m", "function"]
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        if wait_ready(port, process):
            break
    else:
        raise AssertionError("no free port could be bound in three attempts")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


def test_the_wheel_serves_the_page_its_npm_files_and_the_docs_files(installed, function, tmp_path):
    where = subprocess.run([str(installed), "-c", "import function; print(function.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert where.startswith(str(installed.parents[1])), where  # the venv's copy, not the checkout
    with httpx.Client(base_url=function, timeout=30) as http:
        page = http.get("/")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html") and "<title>" in page.text
        version = re.search(r'href="static/([0-9a-f]+)/', page.text).group(1)
        css = http.get(f"/static/{version}/vendor/bootstrap.min.css")
        assert css.status_code == 200
        assert css.content == (NODE_MODULES / "bootstrap/dist/css/bootstrap.min.css").read_bytes()
        assert http.get(f"/static/{version}/vendor/chart.umd.min.js").status_code == 200
        assert http.get(f"/static/{version}/app.js").status_code == 200
        docs = http.get("/schema/swagger")
        files = re.findall(r'(?:href|src)="(/schema/static/[^"]+)"', docs.text)
        assert docs.status_code == 200 and len(files) == 3, docs.text
        for path in files:
            assert http.get(path).status_code == 200, path
        bundle = http.get(next(path for path in files if path.endswith("/swagger-ui-bundle.js")))
        assert bundle.content == (NODE_MODULES / "swagger-ui-dist/swagger-ui-bundle.js").read_bytes()


def test_a_build_without_npm_ci_stops_and_says_what_to_run(tmp_path):
    source = source_tree(tmp_path / "src", node_modules=False)
    refused = build_wheel(source, tmp_path / "dist")
    assert refused.returncode != 0 and "run `npm ci` in web/" in refused.stderr, refused.stderr
    assert not list((tmp_path / "dist").glob("*.whl"))
    # Asked for, a wheel without the UI: an API-only function.
    api_only = build_wheel(source, tmp_path / "dist", BUILD_WEB_UI="off")
    assert api_only.returncode == 0, api_only.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert not [name for name in zipfile.ZipFile(wheel).namelist() if "/web_ui/" in name]

"""The function runs without TensorFlow: nothing under function/ imports it, and the `function` extra does not
install it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "convert", "tf_keras")
ROOT = Path(__file__).resolve().parents[1]


def test_no_module_under_function_imports_the_tensorflow_side():
    for path in (ROOT / "function").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not [n for n in names if n.split(".")[0] in FORBIDDEN], f"{path}: {names}"


def test_serving_a_prediction_loads_no_tensorflow_module(tmp_path):
    """Build the app, load a model and classify, then look at every module the process imported."""
    script = f"""
import io, sys, time
sys.path.insert(0, {str(ROOT)!r})
from tests import tiny_onnx
from litestar.testing import TestClient
from PIL import Image
from function.app import create_app
from function.settings import Settings
path = tiny_onnx.build(__import__("pathlib").Path({str(tmp_path)!r}) / "m.onnx")
with TestClient(create_app(Settings.from_env({{"MODEL_URI": str(path)}}))) as client:
    while client.get("/health").status_code != 200:
        time.sleep(0.01)
    buffer = io.BytesIO(); Image.new("RGB", (9, 9), (250, 0, 0)).save(buffer, "PNG")
    assert client.post("/predict", files={{"file": ("a.png", buffer.getvalue(), "image/png")}}).json()["class"] == "red"
print("\\n".join(sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = {m.split(".")[0] for m in done.stdout.split()}
    assert not loaded & set(FORBIDDEN)


def test_function_extra_installs_no_tensorflow_side_package(tmp_path):
    """pip's resolver, asked for a fresh install of the extra, reports the whole dependency closure."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), f"{ROOT}[function]"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "onnxruntime" in names and "litestar" in names
    heavy = {n for n in names if n.startswith(("tensorflow", "keras", "tf2onnx", "tf-keras", "torch", "jax"))}
    assert not heavy, heavy
    # The registry is read over REST: no MLflow client, and so no pydantic, whose mere presence makes Litestar
    # load its pydantic plugin at start (about 90 ms of every cold start).
    unwanted = names & {"mlflow", "mlflow-skinny", "pydantic"}
    assert not unwanted, unwanted


def test_a_start_imports_nothing_only_some_requests_need(tmp_path):
    """Cold start is mostly imports: what only fetching an image URL (httpx, a cookie jar), a CloudEvent or the
    log needs is imported on first use. http.cookiejar alone cost a start about 50 ms."""
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import function.__main__
from function.app import create_app
from function.settings import Settings
create_app(Settings.from_env({{"MODEL_URI": {str(tmp_path / "m.onnx")!r}}}))
print("\\n".join(sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert not loaded & {"http.cookiejar", "httpx", "cloudevents", "psycopg", "psycopg_pool"}

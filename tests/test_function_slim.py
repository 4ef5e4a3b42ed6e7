"""The function runs without TensorFlow: nothing under function/ imports it, and the `function` extra does not
install it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from function import lazy_imports
from tests import tiny_onnx

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
from function import lazy_imports
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


def test_a_start_and_its_first_prediction_import_nothing_only_other_requests_need(tmp_path):
    """Cold start is mostly imports: what only fetching an image URL (httpx, a cookie jar), a CloudEvent or the
    log needs is imported on first use, and nothing starts anyio's asyncio backend (Litestar's event emitter did,
    for listeners the function does not have). http.cookiejar alone cost a start about 50 ms, the backend 12 ms.
    The app is driven as uvicorn drives it: lifespan startup, then one POST /predict."""
    model = tiny_onnx.build(tmp_path / "m.onnx")
    script = f"""
import asyncio, io, sys
sys.path.insert(0, {str(ROOT)!r})
import function.__main__
from function.app import create_app
from function.settings import Settings
from PIL import Image

app = create_app(Settings.from_env({{"MODEL_URI": {str(model)!r}, "WEB_UI": "off"}}))
photo = io.BytesIO()
Image.new("RGB", (16, 16), (200, 40, 10)).save(photo, "PNG")
body = (b'--b\\r\\nContent-Disposition: form-data; name="file"; filename="a.png"\\r\\n'
        b"Content-Type: image/png\\r\\n\\r\\n" + photo.getvalue() + b"\\r\\n--b--\\r\\n")

async def call(scope, messages):
    sent = []
    async def receive():
        return messages.pop(0) if messages else await asyncio.Event().wait()
    async def send(message):
        sent.append(message)
    task = asyncio.create_task(app(scope, receive, send))
    return task, sent

async def main():
    lifespan, said = await call({{"type": "lifespan", "asgi": {{"version": "3.0"}}, "state": {{}}}},
                                [{{"type": "lifespan.startup"}}])
    while not said:
        await asyncio.sleep(0.01)
    assert said[0]["type"] == "lifespan.startup.complete", said
    status = 503
    while status == 503:  # the model loads in the background
        await asyncio.sleep(0.05)
        headers = [(b"content-type", b"multipart/form-data; boundary=b"), (b"content-length", str(len(body)).encode())]
        scope = {{"type": "http", "asgi": {{"version": "3.0"}}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080), "state": {{}}}}
        task, sent = await call(scope, [{{"type": "http.request", "body": body, "more_body": False}}])
        await task
        status = sent[0]["status"]
    assert status == 200, sent
    print("\\n".join(name for name, module in sys.modules.items() if type(module).__name__ != "_LazyModule"))

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "function.model.classifier" in loaded  # the prediction was made here
    first_use_only = {"http.cookiejar", "httpx", "cloudevents", "psycopg", "psycopg_pool"}
    assert not loaded & (first_use_only | {"anyio._backends._asyncio"})
    assert not loaded & set(lazy_imports.DEFERRED)  # imported by Litestar at start, loaded only when used


def test_a_deferred_module_loads_when_it_is_used(tmp_path):
    """The function's OpenAPI document as YAML still renders: yaml, deferred at start, loads on first use."""
    model = tiny_onnx.build(tmp_path / "m.onnx")
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import function.__main__
from litestar.testing import TestClient
from function.app import create_app
from function.settings import Settings

assert type(sys.modules["yaml"]).__name__ == "_LazyModule"
with TestClient(create_app(Settings.from_env({{"MODEL_URI": {str(model)!r}, "WEB_UI": "off"}}))) as client:
    answer = client.get("/schema/openapi.yaml")
    assert answer.status_code == 200 and "/predict:" in answer.text, answer.text[:300]
assert type(sys.modules["yaml"]).__name__ == "module"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

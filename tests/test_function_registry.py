"""The function against a real MLflow server: a model converted by fish-convert, downloaded once, cached,
served from the cache when the registry is down, and answering as Keras does."""

from __future__ import annotations

import io

import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image

from function.app import create_app
from function.model import registry as rest
from function.model.registry import ModelUnavailable, Registry
from function.model.source import fetch
from function.settings import Settings
from tests.models import register_keras, small_cnn
from tests.readiness import wait_healthy

CLASSES = ["bream", "mullet", "sprat", "trout"]


@pytest.fixture(scope="module")
def converted(tracking_uri):
    """A Keras model registered as the DAG does, converted by the real CLI; (name, keras model, onnx version)."""
    from convert.cli import main

    name = "function-registry-model"
    keras_model = small_cnn(size=32, classes=4, seed=11)
    register_keras(tracking_uri, name, keras_model, CLASSES)
    assert main(["--tracking-uri", tracking_uri, "--model", name]) == 0
    from mlflow import MlflowClient

    version = MlflowClient(tracking_uri).get_model_version_by_alias(name, "onnx").version
    return name, keras_model, version


def test_registry_model_is_downloaded_once_then_served_from_cache_when_the_registry_is_down(
    converted, tracking_uri, tmp_path, dead_url, monkeypatch
):

    name, _, version = converted
    uri = f"models:/{name}@onnx"

    first = fetch(uri, Registry(tracking_uri), tmp_path)
    assert first.version == version and not first.from_cache and first.path.is_file()
    resolve, aliases_resolved = rest.resolve_alias, []

    def resolve_counted(*args):
        aliases_resolved.append(args)
        return resolve(*args)

    def no_download(*args):
        pytest.fail("the cached model was downloaded again")

    with monkeypatch.context() as patch:  # cached file reused, alias still checked
        patch.setattr(rest, "resolve_alias", resolve_counted)
        patch.setattr(rest, "fetch_onnx", no_download)
        again = fetch(uri, Registry(tracking_uri), tmp_path)
    assert again.path == first.path and again.version == version and len(aliases_resolved) == 1

    offline = fetch(uri, Registry(dead_url), tmp_path)
    assert offline.from_cache and offline.version == version and offline.path == first.path

    with pytest.raises(ModelUnavailable, match="unreachable"):
        fetch(uri, Registry(dead_url), tmp_path / "empty-cache")

    moved = tmp_path.with_name(tmp_path.name + "-moved")  # a cache volume mounted somewhere else
    tmp_path.rename(moved)
    offline = fetch(uri, Registry(dead_url), moved)
    assert offline.from_cache and offline.path.is_relative_to(moved) and offline.path.is_file()


def test_pinned_version_and_unknown_alias(converted, tracking_uri, tmp_path):
    name, _, version = converted
    assert fetch(f"models:/{name}/{version}", Registry(tracking_uri), tmp_path).version == version
    with pytest.raises(ModelUnavailable, match="nope"):
        fetch(f"models:/{name}@nope", Registry(tracking_uri), tmp_path)


def test_served_predictions_match_keras(converted, tracking_uri, tmp_path):
    name, keras_model, version = converted
    settings = Settings.from_env(
        {
            "MODEL_URI": f"models:/{name}@onnx",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MODEL_CACHE_DIR": str(tmp_path),
        }
    )
    images = np.random.default_rng(5).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    want = np.asarray(keras_model(images.astype(np.float32) / 255.0))
    with TestClient(create_app(settings)) as client:
        wait_healthy(client)
        assert client.get("/model_info").json()["version"] == version
        for image, expected in zip(images, want, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "PNG")  # lossless, already at the model's size
            body = client.post("/predict", files={"file": ("x.png", buffer.getvalue(), "image/png")}).json()
            got = np.array([body["all_predictions"][c] for c in CLASSES])
            assert body["class"] == CLASSES[int(expected.argmax())]
            assert np.abs(got - expected).max() <= 1e-4


def test_artifacts_on_a_shared_filesystem_are_copied_and_unproxied_stores_need_the_client(
    tmp_path, monkeypatch
):
    """Registries that do not proxy artifacts: file:// is read directly; s3:// and friends need the optional
    MLflow client, and without it the message says what to do."""

    store = tmp_path / "store"
    store.mkdir()
    (store / "model.onnx").write_bytes(b"onnx bytes")
    (store / "MLmodel").write_text("flavors: {}")
    work = tmp_path / "work"
    work.mkdir()
    copied = rest.fetch_onnx(Registry(None), store.as_uri(), work, "version 1 of 'm'")
    assert copied.read_bytes() == b"onnx bytes" and copied.parent == work

    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)  # as in the slim image: not installed
    with pytest.raises(ModelUnavailable, match="does not proxy.*registry-client"):
        rest.fetch_onnx(Registry(None), "s3://bucket/models/m-1/artifacts", work, "version 1 of 'm'")


def test_registry_credentials_follow_mlflow_variables():
    def headers(env):
        return Registry.of(Settings.from_env(env)).headers()

    assert headers({}) == {}
    assert headers({"MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_PASSWORD": "s3cret"}) == {
        "Authorization": "Basic YW5uOnMzY3JldA=="
    }
    both = {
        "MLFLOW_TRACKING_USERNAME": "ann",
        "MLFLOW_TRACKING_PASSWORD": "s3cret",
        "MLFLOW_TRACKING_TOKEN": "tok",
    }
    assert headers(both) == {"Authorization": "Bearer tok"}
    assert "s3cret" not in repr(Settings.from_env(both)) and "tok" not in repr(
        Registry.of(Settings.from_env(both))
    )


class _Stub:
    """An HTTP server on a free port: each GET is recorded in `seen` as (path, Authorization) and answered by
    `answer(path)` -> (status, headers, body); a Content-Length in `headers` may promise more than `body` has."""

    def __init__(self, answer):
        import http.server
        import threading

        stub, self.seen = self, []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                stub.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = answer(self.path)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _recorder(redirects: dict[str, str] | None = None) -> _Stub:
    """Answers `{}`, or redirects a path given in `redirects` to where it names."""

    def answer(path: str):
        target = (redirects or {}).get(path)
        return (302, {"Location": target}, b"{}") if target else (200, {}, b"{}")

    return _Stub(answer)


def _registry(onnx: bytes, *, send_bytes: int | None = None, status: int = 200) -> _Stub:
    """Just enough of MLflow's REST API and artifact proxy to misbehave on purpose (a unit test of the registry
    client's error handling; the real server is used everywhere else in this file)."""
    import json

    def answer(path: str):
        if status != 200:
            return status, {}, b"{}"
        if "get-download-uri" in path:
            return 200, {}, json.dumps({"artifact_uri": "mlflow-artifacts:/1/m/artifacts"}).encode()
        if "?path=" in path:
            return (
                200,
                {},
                json.dumps(
                    {"files": [{"path": "model.onnx", "is_dir": False, "file_size": len(onnx)}]}
                ).encode(),
            )
        return 200, {"Content-Length": str(len(onnx))}, onnx[:send_bytes]

    return _Stub(answer)


def test_registry_credentials_never_follow_a_redirect_to_another_host():
    """A redirect within the registry keeps its credentials; one to another host (a presigned URL) is followed
    without them (urllib copies every header but the body's to wherever it is sent)."""
    elsewhere = _recorder()
    registry = _recorder({"/away": f"{elsewhere.url}/presigned", "/moved": "/here"})
    try:
        assert rest._get_json(Registry(registry.url, token="tok"), "/moved") == {}
        assert rest._get_json(Registry(registry.url, token="tok"), "/away") == {}
        assert registry.seen == [("/moved", "Bearer tok"), ("/here", "Bearer tok"), ("/away", "Bearer tok")]
        assert elsewhere.seen == [("/presigned", None)]
    finally:
        registry.close()
        elsewhere.close()


def test_a_download_cut_short_is_never_cached_and_the_cached_version_serves(tmp_path):
    from function.model import source as model_source

    whole = _registry(b"x" * 5000)
    try:
        good = model_source._download(Registry(whole.url), "m", "1", tmp_path)
        assert good.read_bytes() == b"x" * 5000
    finally:
        whole.close()
    cut = _registry(b"y" * 5000, send_bytes=1200)  # Content-Length says 5000, the connection ends at 1200
    try:
        with pytest.raises(rest.RegistryDown, match="1200 of 5000 bytes"):
            model_source._download(Registry(cut.url), "m", "2", tmp_path)
        assert not (tmp_path / "m" / "2").exists()  # nothing half-written left to be served later
    finally:
        cut.close()


def test_refused_credentials_fall_back_to_the_cache_and_say_which_variables(tmp_path):
    import json

    refusing = _registry(b"", status=401)
    try:
        with pytest.raises(ModelUnavailable, match="MLFLOW_TRACKING_TOKEN.*no copy"):
            fetch("models:/m@onnx", Registry(refusing.url), tmp_path)
        cached = tmp_path / "m" / "3" / "model.onnx"  # as an earlier start with valid credentials left it
        cached.parent.mkdir(parents=True)
        cached.write_bytes(b"onnx")
        (tmp_path / "models_m_onnx.json").write_text(json.dumps({"version": "3", "path": str(cached)}))
        served = fetch("models:/m@onnx", Registry(refusing.url), tmp_path)
        assert served.from_cache and served.version == "3" and served.path == cached
    finally:
        refusing.close()


def test_a_cache_that_cannot_be_written_is_named_not_blamed_on_the_registry(tmp_path):
    from function.model import source as model_source

    registry = _registry(b"z" * 100)
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    try:
        with pytest.raises(ModelUnavailable, match="cannot write the model cache"):
            model_source._download(Registry(registry.url), "m", "1", blocked)
    finally:
        registry.close()

"""The Open Inference Protocol v2 under /v2, on the tiny model: tritonclient (a real protocol client) against the
real process (`python -m function`), and hand-written requests through Litestar's TestClient for the exact wire
shapes, the errors in the protocol's form (never problem details), and the prediction log's rows."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import uuid
from importlib import metadata

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from litestar.testing import TestClient
from PIL import Image
from tritonclient.utils import InferenceServerException

from function.app import create_app
from function.prediction_log import NullLog
from function.settings import Settings
from tests import tiny_onnx
from tests.readiness import wait_healthy
from tests.test_function_process import CLEAN_EXIT, launch

SIZE = tiny_onnx.SIZE
METADATA = {
    "name": "tiny",
    "versions": ["local"],
    "platform": "onnxruntime_onnx",
    "inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, SIZE, SIZE, 3]}],
    "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "class_name", "datatype": "BYTES", "shape": [-1]},
    ],
    "parameters": {"class_names": tiny_onnx.CLASSES},
}


def noise(seed: int, n: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def encoded(pixels: np.ndarray, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, kind)
    return buffer.getvalue()


def truncated_png() -> bytes:
    return encoded(np.full((300, 300, 3), 7, np.uint8))[:60]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def onnx_probabilities(model_path):
    """What onnxruntime itself answers for the same pixels: what the protocol must carry, in class order."""
    session = ort.InferenceSession(str(model_path))
    return lambda pixels: session.run(None, {"image": pixels})[0]


@pytest.fixture(scope="module")
def server(model_path):
    process, port = launch(model_path, MAX_BATCH_FILES="4")
    yield triton.InferenceServerClient(f"127.0.0.1:{port}")
    process.terminate()
    assert process.wait(timeout=30) in CLEAN_EXIT


class RecordingLog(NullLog):
    def __init__(self):
        super().__init__()
        self.rows = []

    def record(self, row) -> None:
        self.rows.append(row)


@pytest.fixture
def log():
    return RecordingLog()


@pytest.fixture
def client(model_path, log):
    settings = Settings.from_env({"MODEL_URI": str(model_path), "MAX_BATCH_BYTES": "100000"})
    with TestClient(create_app(settings, prediction_log=log)) as client:
        wait_healthy(client)
        yield client


def image_input(pixels: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image", list(pixels.shape), "UINT8")
    return tensor.set_data_from_numpy(pixels, binary_data=binary)


def files_input(files: list[bytes], binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(files)], "BYTES")
    if binary:
        return tensor.set_data_from_numpy(np.array(files, dtype=object), binary_data=True)
    as_base64 = np.array([base64.b64encode(data) for data in files], dtype=object)
    return tensor.set_data_from_numpy(as_base64, binary_data=False)


def assert_matches_onnxruntime(result, want: np.ndarray) -> None:
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == want.shape
    np.testing.assert_allclose(probabilities, want, rtol=0, atol=1e-6)
    names = [name.decode() for name in result.as_numpy("class_name")]
    assert names == [tiny_onnx.CLASSES[i] for i in want.argmax(axis=1)]


# tritonclient against the process


def test_health_and_metadata_through_tritonclient(server):
    assert server.is_server_live() and server.is_server_ready()
    assert server.is_model_ready("tiny") and server.is_model_ready("tiny", "local")
    assert not server.is_model_ready("salmon") and not server.is_model_ready("tiny", "9")
    meta = server.get_server_metadata()
    assert meta["name"] == "fish-function" and meta["version"]
    assert "binary_tensor_data" in meta["extensions"]
    assert server.get_model_metadata("tiny") == METADATA == server.get_model_metadata("tiny", "local")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_uint8_pixels_give_onnxruntimes_probabilities(server, onnx_probabilities, binary):
    pixels = noise(1, 3)
    pixels[1, ..., 2] = 255  # one clearly blue, so the classes differ across the batch
    result = server.infer("tiny", [image_input(pixels, binary)], model_version="local")
    assert_matches_onnxruntime(result, onnx_probabilities(pixels))
    response = result.get_response()
    assert response["model_name"] == "tiny" and response["model_version"] == "local"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "base64-json"])
def test_encoded_images_give_onnxruntimes_probabilities(server, onnx_probabilities, binary):
    """PNG is lossless and already at the model's size, so the pixels onnxruntime sees are the file's."""
    pixels = noise(2, 2)
    files = [encoded(image) for image in pixels]
    parameters = None if binary else {"content_type": "base64"}
    result = server.infer("tiny", [files_input(files, binary)], parameters=parameters)
    assert_matches_onnxruntime(result, onnx_probabilities(pixels))


def test_a_jpeg_of_any_size_is_decoded_like_an_upload(server):
    files = [
        encoded(np.full((48, 64, 3), colour, np.uint8), "JPEG") for colour in [(10, 220, 10), (200, 5, 5)]
    ]
    result = server.infer("tiny", [files_input(files)])
    assert [name.decode() for name in result.as_numpy("class_name")] == ["green", "red"]


def test_requested_outputs_only_and_in_the_form_asked(server, onnx_probabilities):
    pixels = noise(3)
    outputs = [triton.InferRequestedOutput("class_name", binary_data=False)]
    result = server.infer("tiny", [image_input(pixels, True)], outputs=outputs)
    (output,) = result.get_response()["outputs"]
    want = tiny_onnx.CLASSES[int(onnx_probabilities(pixels).argmax())]
    assert output == {"name": "class_name", "datatype": "BYTES", "shape": [1], "data": [want]}
    assert result.as_numpy("probabilities") is None

    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=False),
        triton.InferRequestedOutput("class_name", binary_data=True),
    ]
    result = server.infer("tiny", [image_input(pixels, True)], outputs=outputs)
    probabilities, class_name = result.get_response()["outputs"]
    assert "data" in probabilities and "binary_data_size" not in probabilities.get("parameters", {})
    assert class_name["parameters"]["binary_data_size"] == 4 + len(want) and "data" not in class_name
    assert_matches_onnxruntime(result, onnx_probabilities(pixels))


def test_the_request_id_comes_back_with_a_prediction_id_per_image(server):
    result = server.infer("tiny", [image_input(noise(4, 3), True)], request_id="req-7")
    response = result.get_response()
    assert response["id"] == "req-7"
    ids = response["parameters"]["prediction_ids"].split(",")
    assert len({uuid.UUID(value) for value in ids}) == 3


def test_errors_reach_tritonclient_with_their_status_and_message(server):
    with pytest.raises(InferenceServerException) as unknown:
        server.infer("salmon", [image_input(noise(5), True)])
    assert unknown.value.status() == "404" and "unknown model 'salmon'" in unknown.value.message()
    with pytest.raises(InferenceServerException) as version:
        server.infer("tiny", [image_input(noise(5), True)], model_version="9")
    assert version.value.status() == "404" and "version '9'" in version.value.message()

    wrong = np.zeros((1, SIZE, SIZE + 1, 3), np.uint8)
    with pytest.raises(InferenceServerException) as shape:
        server.infer("tiny", [image_input(wrong, True)])
    assert shape.value.status() == "400" and f"[N, {SIZE}, {SIZE}, 3]" in shape.value.message()

    with pytest.raises(InferenceServerException) as corrupt:
        server.infer("tiny", [files_input([encoded(noise(6)[0]), truncated_png(), b"not an image"])])
    message = corrupt.value.message()
    assert corrupt.value.status() == "400" and "element 1:" in message and "element 2:" in message
    assert "element 0" not in message

    for tensor in [files_input([encoded(noise(7)[0])] * 5), image_input(noise(7, 5), True),
                   image_input(noise(7, 5), False)]:  # fmt: skip
        with pytest.raises(InferenceServerException) as too_many:
            server.infer("tiny", [tensor])  # MAX_BATCH_FILES is 4 here
        assert too_many.value.status() == "400" and "MAX_BATCH_FILES" in too_many.value.message()

    with pytest.raises(InferenceServerException) as output:
        server.infer("tiny", [image_input(noise(5), True)], outputs=[triton.InferRequestedOutput("logits")])
    assert output.value.status() == "400" and "unknown output 'logits'" in output.value.message()
    assert server.is_server_ready()


def test_base64_strings_without_saying_so_are_refused_with_the_way_to_send_them(server):
    with pytest.raises(InferenceServerException) as refused:
        server.infer("tiny", [files_input([encoded(noise(8)[0])], binary=False)])
    message = refused.value.message()
    assert refused.value.status() == "400" and "binary tensor data" in message and "base64" in message


# exact wire shapes, by hand


def assert_error(response, status: int) -> str:
    """The protocol's error object, and only that: not an RFC 9457 problem."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and body["error"]
    return body["error"]


def uint8_request(pixels: np.ndarray, **extra) -> dict:
    tensor = {
        "name": "image",
        "shape": list(pixels.shape),
        "datatype": "UINT8",
        "data": pixels.ravel().tolist(),
    }
    return {"inputs": [tensor], **extra}


def test_metadata_and_health_bodies(client):
    version = metadata.version("fish-function")
    server = {"name": "fish-function", "version": version, "extensions": ["binary_tensor_data"]}
    assert client.get("/v2").json() == server
    assert client.get("/v2/models/tiny").json() == METADATA
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/tiny/ready",
        "/v2/models/tiny/versions/local/ready",
    ]:
        response = client.get(path)
        assert response.status_code == 200 and response.content == b"", path
    assert "unknown model 'salmon'" in assert_error(client.get("/v2/models/salmon/ready"), 404)
    assert "version 'local'" in assert_error(client.get("/v2/models/tiny/versions/2"), 404)


def test_a_json_infer_response_in_full(client, onnx_probabilities):
    pixels = noise(9, 2)
    response = client.post("/v2/models/tiny/infer", json=uint8_request(pixels, id="abc"))
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    body = response.json()
    want = onnx_probabilities(pixels)
    ids = body["parameters"]["prediction_ids"].split(",")
    assert body == {
        "model_name": "tiny",
        "model_version": "local",
        "id": "abc",
        "parameters": {"prediction_ids": ",".join(ids)},
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [2, 3], "data": body["outputs"][0]["data"]},
            {"name": "class_name", "datatype": "BYTES", "shape": [2],
             "data": [tiny_onnx.CLASSES[i] for i in want.argmax(axis=1)]},
        ],
    }  # fmt: skip
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(2, 3), want, rtol=0, atol=1e-6)
    assert "id" not in client.post("/v2/models/tiny/infer", json=uint8_request(pixels)).json()


def test_nested_json_data_is_accepted_as_well_as_flat(client):
    pixels = noise(10)
    flat = client.post("/v2/models/tiny/infer", json=uint8_request(pixels)).json()
    request = uint8_request(pixels)
    request["inputs"][0]["data"] = pixels.tolist()
    nested = client.post("/v2/models/tiny/infer", json=request).json()
    assert nested["outputs"] == flat["outputs"]


def test_a_binary_response_by_hand(client, onnx_probabilities):
    """binary_data_output for every output: the JSON, then FP32 little-endian, then 4-byte-length strings."""
    pixels = noise(11, 2)
    response = client.post(
        "/v2/models/tiny/infer", json=uint8_request(pixels, parameters={"binary_data_output": True})
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    probabilities, class_name = header["outputs"]
    assert "data" not in probabilities and probabilities["parameters"] == {"binary_data_size": 2 * 3 * 4}
    tail = response.content[length:]
    got = np.frombuffer(tail[:24], "<f4").reshape(2, 3)
    np.testing.assert_allclose(got, onnx_probabilities(pixels), rtol=0, atol=1e-6)
    names, at = [], 24
    while at < len(tail):
        (size,) = struct.unpack_from("<I", tail, at)
        names.append(tail[at + 4 : at + 4 + size].decode())
        at += 4 + size
    assert class_name["parameters"]["binary_data_size"] == len(tail) - 24
    assert names == [tiny_onnx.CLASSES[i] for i in onnx_probabilities(pixels).argmax(axis=1)]


def binary_request(tensor: dict, raw: bytes) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def test_binary_bytes_elements_are_length_prefixed(client):
    files = [encoded(np.full((8, 8, 3), colour, np.uint8)) for colour in [(0, 0, 250), (250, 0, 0)]]
    raw = b"".join(struct.pack("<I", len(data)) + data for data in files)
    tensor = {
        "name": "image",
        "shape": [2],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(raw)},
    }
    body, headers = binary_request(tensor, raw)
    response = client.post("/v2/models/tiny/infer", content=body, headers=headers)
    assert response.json()["outputs"][1]["data"] == ["blue", "red"]
    short, headers = binary_request({**tensor, "parameters": {"binary_data_size": len(raw) - 1}}, raw[:-1])
    assert "cut short" in assert_error(
        client.post("/v2/models/tiny/infer", content=short, headers=headers), 400
    )


def tensor(**fields) -> dict:
    return {"inputs": [{"name": "image", "shape": [1, SIZE, SIZE, 3], "datatype": "UINT8",
                        "data": [0] * (SIZE * SIZE * 3), **fields}]}  # fmt: skip


BAD_REQUESTS = [
    ("not json", b"{not json", {}, "not an inference request"),
    ("no inputs", b'{"outputs": []}', {}, "inputs"),
    ("two inputs", {"inputs": tensor()["inputs"] * 2}, {}, "one input"),
    ("wrong input name", tensor(name="pixels"), {}, "'pixels'"),
    ("fp32", tensor(datatype="FP32"), {}, "got FP32"),
    ("wrong shape", tensor(shape=[1, SIZE, SIZE]), {}, f"[N, {SIZE}, {SIZE}, 3]"),
    ("empty batch", tensor(shape=[0, SIZE, SIZE, 3], data=[]), {}, "[N,"),
    ("too few values", tensor(data=[0] * 10), {}, "has 10 values"),
    ("over 255", tensor(data=[256] * (SIZE * SIZE * 3)), {}, "0 to 255"),
    ("floats", tensor(data=[0.5] * (SIZE * SIZE * 3)), {}, "0 to 255"),
    ("ragged", tensor(data=[[0, 1], [2]]), {}, "not a regular array"),
    ("nested, not as the shape", tensor(data=[[0] * (SIZE * SIZE)] * 3), {}, "not a regular array"),
    ("a string among the values", tensor(data=[0] * (SIZE * SIZE * 3 - 1) + ["1"]), {}, "0 to 255"),
    ("negative", tensor(data=[-1] * (SIZE * SIZE * 3)), {}, "0 to 255"),
    ("no data", tensor(data=None), {}, "no data"),
    ("huge parameters", tensor(parameters={"x": [0] * 40_000}), {}, "more than 65,536"),
    ("bytes as plain strings", tensor(datatype="BYTES", shape=[1], data=["abc"]), {}, "base64"),
    (
        "more base64 strings than the shape",
        tensor(datatype="BYTES", shape=[1], data=["AA==", "AA=="], parameters={"content_type": "base64"}),
        {},
        "list of 1 base64 strings",
    ),
    (
        "bad base64",
        tensor(datatype="BYTES", shape=[1], data=["@@@"], parameters={"content_type": "base64"}),
        {},
        "element 0 is not valid base64",
    ),
    ("bytes shape", tensor(datatype="BYTES", shape=[1, 1], data=["a"]), {}, "shape [N]"),
    ("binary size without binary", tensor(parameters={"binary_data_size": 192}), {}, "binary_data_size 192"),
    ("header length not a number", tensor(), {"Inference-Header-Content-Length": "many"}, "not a number"),
    ("header length past the body", tensor(), {"Inference-Header-Content-Length": "999999"}, "the body has"),
    ("unknown output", {**tensor(), "outputs": [{"name": "logits"}]}, {}, "unknown output 'logits'"),
    (
        "classification extension",
        {**tensor(), "outputs": [{"name": "class_name", "parameters": {"classification": 2}}]},
        {},
        "classification",
    ),
    ("compressed", tensor(), {"Content-Encoding": "gzip"}, "compressed"),
]


@pytest.mark.parametrize(("what", "body", "headers", "says"), BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS])
def test_bad_requests_are_400_in_the_protocols_form(client, log, what, body, headers, says):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = client.post("/v2/models/tiny/infer", headers=headers, **kwargs)
    assert says in assert_error(response, 400)
    assert log.rows == [] and client.get("/v2/health/ready").status_code == 200


@pytest.fixture
def small_limits(model_path):
    """MAX_BATCH_BYTES below what MAX_BATCH_FILES images take in JSON: 64 x 192 values x 6 bytes + 64 KiB."""
    settings = Settings.from_env(
        {"MODEL_URI": str(model_path), "MAX_BATCH_BYTES": "20000", "MAX_BATCH_FILES": "64"}
    )
    with TestClient(create_app(settings)) as client:
        wait_healthy(client)
        yield client


def test_a_json_body_may_take_what_max_batch_files_images_take_in_json(small_limits):
    pixels = noise(17, 64)
    request = uint8_request(pixels)
    request["inputs"][0]["data"] = pixels.tolist()  # nested with spaces: the most JSON a value takes
    body = json.dumps(request).encode()
    assert 20_000 < len(body) < 139_264
    response = small_limits.post("/v2/models/tiny/infer", content=body)
    assert response.status_code == 200 and response.json()["outputs"][0]["shape"] == [64, 3]

    over = body + b" " * (139_264 - len(body) + 1)
    # with its Content-Length, and chunked: then the bytes are counted as they come
    for content in [over, iter([over[:70_000], over[70_000:]])]:
        response = small_limits.post("/v2/models/tiny/infer", content=content)
        message = assert_error(response, 413)
        assert "139,264 bytes for JSON" in message and "64 images (MAX_BATCH_FILES) of 8x8" in message
    assert "content-length" not in response.request.headers


def test_a_binary_body_over_max_batch_bytes_is_413_in_the_protocols_form(small_limits):
    pixels = noise(18, 110)  # more than MAX_BATCH_FILES too: the body's limit is held before it is read
    tensor = {"name": "image", "shape": list(pixels.shape), "datatype": "UINT8",
              "parameters": {"binary_data_size": pixels.size}}  # fmt: skip
    body, headers = binary_request(tensor, pixels.tobytes())
    assert len(body) > 20_000  # MAX_BATCH_BYTES here
    response = small_limits.post("/v2/models/tiny/infer", content=body, headers=headers)
    assert "20,000 bytes (MAX_BATCH_BYTES)" in assert_error(response, 413)


def test_503_with_retry_after_while_there_is_no_model(tmp_path):
    settings = Settings.from_env({"MODEL_URI": str(tmp_path / "missing.onnx")})
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while "still loading" in (reason := client.get("/health").json()["reason"]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert "missing.onnx" in reason
        assert client.get("/v2/health/live").status_code == 200
        for response in [
            client.get("/v2/health/ready"),
            client.get("/v2/models/tiny"),
            client.get("/v2/models/tiny/ready"),
            client.post("/v2/models/tiny/infer", json=uint8_request(noise(12))),
        ]:
            assert "missing.onnx" in assert_error(response, 503)
            assert response.headers["retry-after"] == "30"


def test_predictions_are_logged_as_oip_with_the_callers_id(client, log):
    response = client.post("/v2/models/tiny/infer", json=uint8_request(noise(13, 2), id="body-id"),
                           headers={"X-Request-Id": "header-id"})  # fmt: skip
    ids = response.json()["parameters"]["prediction_ids"].split(",")
    assert [str(row.id) for row in log.rows] == ids
    assert {(row.source, row.request_id) for row in log.rows} == {("oip", "header-id")}
    client.post("/v2/models/tiny/infer", json=uint8_request(noise(14), id="body-id"))
    assert log.rows[-1].request_id == "body-id"  # without X-Request-Id, the protocol's own id


def test_openapi_documents_every_v2_endpoint(client):
    paths = client.get("/schema/openapi.json").json()["paths"]
    expected = {
        "/v2": "get",
        "/v2/health/live": "get",
        "/v2/health/ready": "get",
        "/v2/models/{name}": "get",
        "/v2/models/{name}/versions/{version}": "get",
        "/v2/models/{name}/ready": "get",
        "/v2/models/{name}/versions/{version}/ready": "get",
        "/v2/models/{name}/infer": "post",
        "/v2/models/{name}/versions/{version}/infer": "post",
    }
    for path, method in expected.items():
        operation = paths[path][method]
        assert operation["summary"], path
    infer = paths["/v2/models/{name}/infer"]["post"]["responses"]
    assert {"200", "400", "404", "413", "503"} <= set(infer)
    assert "MAX_BATCH_FILES" in infer["413"]["description"]
    assert "application/json" in infer["404"]["content"]


def test_a_request_with_an_unreadable_image_logs_none_of_its_images(client, log):
    """The protocol has no per-element errors: the request fails, so its good images must leave no row."""
    files = [encoded(noise(15)[0]), truncated_png(), encoded(noise(16)[0])]
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3], "parameters": {"content_type": "base64"},
                        "data": [base64.b64encode(data).decode() for data in files]}]}  # fmt: skip
    assert "element 1" in assert_error(client.post("/v2/models/tiny/infer", json=body), 400)
    assert log.rows == []
    del body["inputs"][0]["data"][1]
    body["inputs"][0]["shape"] = [2]
    assert client.post("/v2/models/tiny/infer", json=body).status_code == 200
    assert len(log.rows) == 2

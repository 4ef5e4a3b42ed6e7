"""CloudEvents at POST /, with the `cloudevents` SDK as the client: both content modes, the reply event, the
statuses Knative's redelivery rules need, image URLs held to the allowed prefixes, and one row per event."""

from __future__ import annotations

import gzip
import io
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psycopg
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent
from litestar.testing import TestClient
from PIL import Image
from prometheus_client import REGISTRY

from function.app import create_app
from function.inference.image_urls import ImageUrlRefused, ImageUrls
from function.model.slot import ModelSlot
from function.prediction_log import PostgresLog
from function.protocols.cloudevents import IMAGE_SUBMITTED, PREDICTION_COMPLETED
from function.settings import Settings
from tests import tiny_onnx
from tests.postgres import fresh_database
from tests.readiness import wait_healthy
from tests.test_function_app import assert_problem
from tests.test_function_process import launch


def jpeg(colour=(20, 30, 220), size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def image_event(data, content_type="image/jpeg", **attributes) -> CloudEvent:
    base = {"type": IMAGE_SUBMITTED, "source": "/tests/camera", "id": str(uuid.uuid4())}
    return CloudEvent({**base, "datacontenttype": content_type, **attributes}, data)


def post(client, message: ce_http.HTTPMessage):
    return client.post("/", content=message.body, headers=message.headers)


def reply_of(response) -> CloudEvent:
    assert response.status_code == 200, response.text
    message = ce_http.HTTPMessage(dict(response.headers), response.content)
    return ce_http.from_http_event(message)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


def settings_for(model_path, **env) -> Settings:
    return Settings.from_env({"MODEL_URI": str(model_path), "K_SERVICE": "fish-function",
                              "K_REVISION": "fish-function-00002", **env})  # fmt: skip


@pytest.fixture
def client(model_path):
    with TestClient(create_app(settings_for(model_path))) as client:
        wait_healthy(client)
        yield client


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_an_image_event_is_answered_with_a_prediction_event_in_the_same_mode(client, mode):
    event = image_event(jpeg())
    to_wire = ce_http.to_binary_event if mode == "binary" else ce_http.to_structured_event
    response = post(client, to_wire(event))

    if mode == "binary":
        assert response.headers["ce-type"] == PREDICTION_COMPLETED
        assert response.headers["content-type"] == "application/json"
    else:
        assert response.headers["content-type"].startswith("application/cloudevents+json")
        assert not any(name.startswith("ce-") for name in response.headers)
    reply = reply_of(response)
    assert reply.get_type() == PREDICTION_COMPLETED  # not the request's type: a Trigger on it cannot loop
    assert reply.get_source() == "/fish-function/revisions/fish-function-00002"
    assert reply.get_subject() == event.get_id()
    assert reply.get_id() != event.get_id() and reply.get_id() == reply.get_data()["prediction_id"]
    assert reply.get_datacontenttype() == "application/json"

    upload = client.post("/predict", files={"file": ("fish.jpg", jpeg(), "image/jpeg")}).json()
    data = reply.get_data()
    assert data.keys() == upload.keys()
    assert data["class"] == upload["class"] == "blue"
    assert data["all_predictions"] == upload["all_predictions"]


def test_a_png_whose_bytes_happen_to_be_text_stays_an_image(client):
    # The SDK alone would hand any body that decodes as UTF-8 over as text; an image must stay bytes.
    buffer = io.BytesIO()
    Image.new("L", (1, 1), 0).save(buffer, "GIF")
    reply = reply_of(post(client, ce_http.to_binary_event(image_event(buffer.getvalue(), "image/gif"))))
    assert reply.get_data()["class"] in {"red", "green", "blue"}


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
def test_an_event_without_a_required_attribute_is_400_and_names_it(client, missing):
    message = ce_http.to_binary_event(image_event(jpeg()))
    headers = {name: value for name, value in message.headers.items() if name != f"ce-{missing}"}
    if missing == "specversion":  # a lone ce- header still makes it a binary-mode event
        assert any(name.startswith("ce-") for name in headers)
    problem = assert_problem(client.post("/", content=message.body, headers=headers), 400)
    assert missing in problem["detail"]


def test_a_structured_event_without_an_id_is_400_not_given_one(client):
    body = (
        b'{"specversion": "1.0", "type": "%s", "source": "/x", "data_base64": ""}' % IMAGE_SUBMITTED.encode()
    )
    problem = assert_problem(
        client.post("/", content=body, headers={"content-type": "application/cloudevents+json"}), 400
    )
    assert "id" in problem["detail"]


@pytest.mark.parametrize(
    ("what", "request_kwargs", "status", "words"),
    [
        ("a plain POST", {"content": jpeg(), "headers": {"content-type": "image/jpeg"}}, 400, "not a CloudEvent"),
        ("a batch", {"content": b"[]", "headers": {"content-type": "application/cloudevents-batch+json"}}, 400,
         "batched"),
        ("bad JSON", {"content": b"{", "headers": {"content-type": "application/cloudevents+json"}}, 400,
         "cannot be read"),
        ("JSON that is not an object", {"content": b"[1]", "headers": {"content-type": "application/cloudevents+json"}},
         400, "cannot be read"),
    ],
)  # fmt: skip
def test_what_is_not_an_image_event_is_a_4xx_knative_does_not_redeliver(
    client, what, request_kwargs, status, words
):
    problem = assert_problem(client.post("/", **request_kwargs), status)
    assert words in problem["detail"]


@pytest.mark.parametrize(
    ("event", "status", "words"),
    [
        (image_event(jpeg(), type="com.example.other"), 400, IMAGE_SUBMITTED),
        (image_event(b"just some words", "text/plain"), 415, "neither an image"),
        (image_event({"photo": "x"}, "application/json"), 415, "image_url"),
        (image_event(None), 415, "no data"),
        (image_event(b"\x00\x01 not an image format at all", "image/png"), 415, "not an image"),
        (image_event(jpeg((1, 2, 3), (300, 300))[:400]), 422, ""),
    ],
)
def test_events_that_can_never_be_classified_are_4xx(client, event, status, words):
    for to_wire in (ce_http.to_binary_event, ce_http.to_structured_event):
        problem = assert_problem(post(client, to_wire(event)), status)
        assert words in problem["detail"]


def test_while_the_model_loads_an_event_is_503_with_retry_after_then_answered(model_path):
    """The cold start from zero: Knative redelivers a 503, and the redelivery is classified."""
    settings = settings_for(model_path)
    slot = ModelSlot()  # not loading yet: the test says when the load starts
    with TestClient(create_app(settings, slot=slot)) as client:
        message = ce_http.to_binary_event(image_event(jpeg()))
        response = post(client, message)
        problem = assert_problem(response, 503)
        assert int(response.headers["retry-after"]) >= 1 and "loading" in problem["detail"]

        slot.start(settings)
        wait_healthy(client)
        assert reply_of(post(client, message)).get_data()["class"] == "blue"


def test_a_model_that_failed_to_load_asks_for_a_later_retry(tmp_path):
    settings = Settings.from_env({"MODEL_URI": str(tmp_path / "missing.onnx")})
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").json()["reason"] == "the model is still loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        response = post(client, ce_http.to_binary_event(image_event(jpeg())))
        assert_problem(response, 503)
        assert int(response.headers["retry-after"]) >= 10


def test_events_are_counted_by_mode(client):
    def received(mode):
        return REGISTRY.get_sample_value("cloudevents_received_total", {"mode": mode}) or 0

    before = received("structured")
    post(client, ce_http.to_structured_event(image_event(jpeg())))
    assert received("structured") == before + 1


# --- image_url: only from the allowed prefixes -------------------------------------------------------------


class PhotoServer(BaseHTTPRequestHandler):
    """A storage bucket stand-in: /photos/fish.jpg, a secret next to it, redirects, failures and a hang."""

    hits: list[str] = []
    cookies: list[str | None] = []  # the Cookie header of each request for /photos/cookie.jpg

    def do_GET(self):  # noqa: N802
        PhotoServer.hits.append(self.path)
        routes = {
            "/photos/fish.jpg": (200, {"Content-Type": "image/jpeg"}, jpeg((200, 20, 20))),
            "/secret/fish.jpg": (200, {"Content-Type": "image/jpeg"}, jpeg((20, 200, 20))),
            "/photos/moved.jpg": (302, {"Location": "/photos/fish.jpg"}, b""),
            "/photos/escape.jpg": (302, {"Location": "/secret/fish.jpg"}, b""),
            "/photos/elsewhere.jpg": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/photos/broken.jpg": (500, {}, b"oops"),
            "/photos/page.html": (200, {"Content-Type": "text/html"}, b"<html>not an image</html>"),
            "/photos/huge.jpg": (200, {"Content-Type": "image/jpeg"}, b"\xff\xd8" + b"\x00" * 300_000),
        }
        if self.path == "/photos/cookie.jpg":  # a server that hands out a session cookie
            PhotoServer.cookies.append(self.headers.get("Cookie"))
            routes[self.path] = (200, {"Content-Type": "image/jpeg", "Set-Cookie": "session=s3cret; Path=/"},
                                 jpeg((200, 20, 20)))  # fmt: skip
        if self.path == "/photos/hang.jpg":
            time.sleep(3)
        if self.path == "/photos/once.jpg":  # there for the first fetch, deleted after it
            routes[self.path] = (200, {"Content-Type": "image/jpeg"}, jpeg((200, 20, 20)))
            if PhotoServer.hits.count(self.path) > 1:
                routes[self.path] = (404, {}, b"deleted")
        if self.path == "/photos/bomb.jpg":  # compressed whatever the client asked for
            routes[self.path] = (
                200,
                {"Content-Type": "image/jpeg", "Content-Encoding": "gzip"},
                gzip.compress(b"\x00" * 5_000_000),
            )
        status, headers, body = routes.get(self.path, (404, {}, b"no such photo"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def photos():
    server = ThreadingHTTPServer(("127.0.0.1", 0), PhotoServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def url_client(model_path, photos):
    env = {"IMAGE_URL_ALLOWED_PREFIXES": f"{photos}/photos/", "IMAGE_URL_TIMEOUT_SECONDS": "1",
           "MAX_UPLOAD_BYTES": "200000"}  # fmt: skip
    with TestClient(create_app(settings_for(model_path, **env))) as client:
        wait_healthy(client)
        PhotoServer.hits.clear()
        yield client


def url_event(url: str) -> CloudEvent:
    return image_event({"image_url": url}, "application/json")


@pytest.mark.parametrize("to_wire", [ce_http.to_binary_event, ce_http.to_structured_event])
def test_an_image_url_under_an_allowed_prefix_is_fetched_and_classified(url_client, photos, to_wire):
    reply = reply_of(post(url_client, to_wire(url_event(f"{photos}/photos/fish.jpg"))))
    assert reply.get_data()["class"] == "red"
    reply = reply_of(post(url_client, to_wire(url_event(f"{photos}/photos/moved.jpg"))))  # redirect inside
    assert reply.get_data()["class"] == "red"


def test_no_cookie_is_kept_from_one_event_to_the_next(url_client, photos):
    """A cookie one image server set must not go back with the next event's fetch (another producer's)."""
    PhotoServer.cookies.clear()
    for _ in range(2):
        post(url_client, ce_http.to_binary_event(url_event(f"{photos}/photos/cookie.jpg"))).raise_for_status()
    assert PhotoServer.cookies == [None, None]


@pytest.mark.parametrize(
    "path",
    [
        "/secret/fish.jpg",  # the same host, outside the prefix
        "/photos/../secret/fish.jpg",
        "/photos/%2e%2e/secret/fish.jpg",
        "/photos/escape.jpg",  # a redirect out of the prefix
        "/photos/elsewhere.jpg",  # a redirect to another host
    ],
)
def test_an_image_url_outside_the_allowed_prefixes_is_403_and_nothing_outside_is_fetched(
    url_client, photos, path
):
    problem = assert_problem(post(url_client, ce_http.to_binary_event(url_event(photos + path))), 403)
    assert "IMAGE_URL_ALLOWED_PREFIXES" in problem["detail"] or "not fetched" in problem["detail"]
    assert not any(hit.startswith("/secret") for hit in PhotoServer.hits)


def test_a_malformed_image_url_is_403_not_a_500_that_knative_would_retry(url_client, photos):
    for url in ["https://[/x", f"{photos}/photos/\x7f.jpg", f"{photos}]/photos/a.jpg"]:
        assert_problem(post(url_client, ce_http.to_binary_event(url_event(url))), 403)


def test_image_url_fetching_is_off_unless_prefixes_are_set(client, photos):
    problem = assert_problem(
        post(client, ce_http.to_binary_event(url_event(f"{photos}/photos/fish.jpg"))), 403
    )
    assert "off" in problem["detail"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/photos/missing.jpg", 422),  # the bucket says 404: a redelivery would not help
        ("/photos/page.html", 415),  # answered, but not an image
        ("/photos/huge.jpg", 413),  # more than MAX_UPLOAD_BYTES
        ("/photos/broken.jpg", 502),  # the bucket failed: Knative redelivers a 5xx
        ("/photos/hang.jpg", 502),  # slower than IMAGE_URL_TIMEOUT_SECONDS
        ("/photos/bomb.jpg", 422),  # compressed: 5 MB from 5 kB, never inflated
    ],
)
def test_image_url_failures_get_statuses_that_redeliver_only_what_may_succeed(
    url_client, photos, path, status
):
    started = time.monotonic()
    assert_problem(post(url_client, ce_http.to_binary_event(url_event(photos + path))), status)
    assert time.monotonic() - started < 2.9  # the hang is cut at the timeout, not waited out


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://bucket.example.com/photos/a.jpg", True),
        ("https://BUCKET.example.com:443/photos/sub/a.jpg", True),
        ("https://bucket.example.com/photos", False),  # the folder itself is not under it
        ("http://bucket.example.com/photos/a.jpg", False),  # another scheme
        ("https://bucket.example.com:8443/photos/a.jpg", False),  # another port
        (
            "https://bucket.example.com/photos-private/a.jpg",
            False,
        ),  # a sibling that shares the prefix's letters
        ("https://bucket.example.com.evil.net/photos/a.jpg", False),
        ("https://bucket.example.com@evil.net/photos/a.jpg", False),  # credentials, and the host is evil.net
        ("https://evil.net#@bucket.example.com/photos/a.jpg", False),
        ("https://bucket.example.com/photos/%2E%2E/admin", False),
        ("https://bucket.example.com\\@evil.net/photos/a.jpg", False),
        ("https://bucket.example.com/photos/..;/admin", False),  # Tomcat reads ..; as ..
        ("https://bucket.example.com/photos/..%5cadmin", False),  # a backslash, escaped
        ("https://bucket.example.com/photos/%252e%252e/admin", False),  # decoded twice by some
        ("https://bucket.example.com/photos%2Fa.jpg", False),  # one segment at the root, as sent
        ("https://bucket.example.com/photos/%c0%ae%c0%ae/admin", False),  # overlong UTF-8 for ..
        ("https://bucket.example.com/photos/caf%C3%A9.jpg", True),  # UTF-8 is fine
        ("https://[bucket.example.com]/photos/a.jpg", False),  # not an IPv6 literal: refused, not a crash
        ("https://bucket.example.com]/photos/a.jpg", False),
        ("https://bucket.example.com/photos/\x7f", False),
        ("https://bucket.example.com/photos/" + "a" * 5000, False),
        ("HTTPS://bucket.example.com/photos/a.jpg", True),
        ("file:///etc/passwd", False),
        ("gopher://bucket.example.com/photos/a.jpg", False),
    ],
)
def test_allowed_prefixes_compare_scheme_host_port_and_path(url, allowed):
    urls = ImageUrls(("https://bucket.example.com/photos/",), timeout_s=1, max_bytes=1000)
    if allowed:
        urls.check(url)
    else:
        with pytest.raises(ImageUrlRefused):
            urls.check(url)


# --- one row per event, whichever instance classifies it ----------------------------------------------------


@pytest.fixture
def database(postgres):
    with fresh_database(postgres.url, "events") as url:
        yield url


def event_rows(url: str, source: str, event_id: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id::text, source, event_source, event_id FROM predictions WHERE event_source = %s "
            "AND event_id = %s",
            (source, event_id),
        ).fetchall()


def test_a_redelivered_event_gets_the_first_answer_and_adds_no_row(model_path, database):
    duplicates = "cloudevents_duplicates_total"
    before = REGISTRY.get_sample_value(duplicates) or 0
    event = image_event(jpeg())
    with TestClient(create_app(settings_for(model_path), prediction_log=PostgresLog(database))) as client:
        wait_healthy(client)
        first = reply_of(post(client, ce_http.to_binary_event(event)))
        again = reply_of(
            post(client, ce_http.to_structured_event(event))
        )  # the mode may differ; the event not
    assert again.get_id() == first.get_id()
    replayed, original = again.get_data(), first.get_data()
    assert replayed.pop("prediction_time") == pytest.approx(
        original.pop("prediction_time"), rel=1e-6
    )  # float4
    assert replayed == original
    assert REGISTRY.get_sample_value(duplicates) == before + 1
    assert event_rows(database, event.get_source(), event.get_id()) == [
        (first.get_id(), "event", event.get_source(), event.get_id())
    ]


def test_a_redelivery_whose_image_is_gone_gets_the_first_answer(model_path, photos, database):
    env = {"IMAGE_URL_ALLOWED_PREFIXES": f"{photos}/photos/"}
    app = create_app(settings_for(model_path, **env), prediction_log=PostgresLog(database))
    event = url_event(f"{photos}/photos/once.jpg")
    with TestClient(app) as client:
        wait_healthy(client)
        first = reply_of(post(client, ce_http.to_binary_event(event)))
        again = reply_of(post(client, ce_http.to_binary_event(event)))  # the photo is 404 now
        other = url_event(f"{photos}/photos/once.jpg")  # a new event for the deleted photo is not answered
        assert_problem(post(client, ce_http.to_binary_event(other)), 422)
    assert again.get_id() == first.get_id() and again.get_source() == first.get_source()
    assert again.get_time() == first.get_time()


@pytest.mark.parametrize(
    ("header", "value"),
    [("ce-id", "a%00b"), ("ce-id", "x" * 1100), ("ce-source", "/" + "s" * 1100)],
)
def test_an_event_id_or_source_the_log_cannot_key_on_is_400(client, header, value):
    message = ce_http.to_binary_event(image_event(jpeg()))
    problem = assert_problem(
        client.post("/", content=message.body, headers={**message.headers, header: value}), 400
    )
    assert "1024" in problem["detail"]


def test_the_same_event_delivered_to_two_processes_sharing_postgres_is_logged_once(model_path, database):
    """Knative redelivers to whichever pod it likes, also while the first delivery is still running."""
    processes = [launch(model_path, DATABASE_URL=database) for _ in range(2)]
    try:
        events = [image_event(jpeg((20, 30, 200 + i))) for i in range(12)]

        def deliver(args):
            port, event = args
            message = ce_http.to_binary_event(event)
            return reply_of(httpx.post(f"http://127.0.0.1:{port}/", content=message.body,
                                       headers=message.headers, timeout=60))  # fmt: skip

        ports = [port for _, port in processes]
        with ThreadPoolExecutor(8) as pool:
            # each event twice, to both processes at once; then a third, late, redelivery
            replies = list(pool.map(deliver, [(port, event) for event in events for port in ports]))
            late = list(pool.map(deliver, [(ports[0], event) for event in events]))
        for i, event in enumerate(events):
            answers = {replies[2 * i].get_id(), replies[2 * i + 1].get_id(), late[i].get_id()}
            assert len(answers) == 1, f"event {i} was answered as {answers}"
            assert event_rows(database, event.get_source(), event.get_id()) == [
                (answers.pop(), "event", event.get_source(), event.get_id())
            ]
    finally:
        for process, _ in processes:
            process.terminate()
            process.wait(timeout=60)

"""The web UI in a real Chromium (Debian's, driven by Playwright) against the real process (`python -m function`)
serving the demo's MobileNetV2 from the real MLflow registry, with a real PostgreSQL: the demo's sample photos in
by picker, drop and paste, errors in words, warming up, feedback and history across reloads and browsers, stats,
page weight, accessibility, screenshots."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import mlflow
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from convert import samples
from convert.demo.mlflow_server import free_port
from convert.demo.seed import slug
from tests.postgres import fresh_database
from tests.test_function_process import launch

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
TIMEOUT_MS = 20_000
MAX_UPLOAD_BYTES = 20_000  # of the function without the log: the demo's samples fit, a noisy PNG does not

pytestmark = (
    pytest.mark.slow
)  # the demo model is trained and converted first (shared with the other slow tests)


def _needed(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _needed(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    if not (ROOT / "web" / "node_modules" / "bootstrap").exists() or not AXE.exists():
        _needed("the browser tests need web/node_modules (npm ci in web/)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _needed("the browser tests need Playwright for Python (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


class Demo:
    """The demo model as the registry serves it, and a sample photo of each species that the model names right
    (the samples are held-out photos: a few are misclassified, and a test about the UI needs a known answer)."""

    def __init__(self, converted_demo, tracking_uri: str, folder: Path):
        self.uri, self.name, self.version, samples_dir = converted_demo
        self.tracking_uri = tracking_uri
        local = Path(
            mlflow.artifacts.download_artifacts(self.uri, dst_path=str(folder), tracking_uri=tracking_uri)
        )
        (self.file,) = local.rglob("*.onnx")
        meta = {p.key: p.value for p in onnx.load(self.file).metadata_props}
        self.classes: list[str] = json.loads(meta["class_names"])
        session = ort.InferenceSession(str(self.file))
        size = tuple(session.get_inputs()[0].shape[1:3])
        self.photos: dict[str, Path] = {}
        for species in self.classes:
            files = samples.image_files(samples_dir / slug(species))
            named = session.run(None, {"image": samples.load(files, size)})[0].argmax(1)
            right = [f for f, n in zip(files, named, strict=True) if self.classes[n] == species]
            print(f"demo model: {len(right)}/{len(files)} samples of {species} named right")
            if right:
                self.photos[species] = right[0]
        # The test's short training names most species right; the tests need a few different ones.
        self.species = list(self.photos)
        assert len(self.species) >= 4, f"the demo model names only {self.species} right"

    def pick(self, i: int) -> str:
        """The i-th species with a sample the model names right (round the list)."""
        return self.species[i % len(self.species)]

    def photo(self, species: str) -> tuple[str, str, bytes]:
        """(name, type, bytes) of a sample of `species`, as a person's file would be."""
        return f"{slug(species)}.jpg", "image/jpeg", self.photos[species].read_bytes()


@pytest.fixture(scope="module")
def demo(converted_demo, tracking_uri, tmp_path_factory) -> Demo:
    return Demo(converted_demo, tracking_uri, tmp_path_factory.mktemp("demo-model"))


@pytest.fixture(scope="module")
def served(demo, postgres, tmp_path_factory):
    """The function with the prediction log on, serving the demo model from the registry: its base URL."""
    with fresh_database(postgres.url, "webui") as database_url:
        # The same version as its own shadow: every door feeds it, and the Stats tab shows the comparison.
        process, port = launch(demo.uri, DATABASE_URL=database_url, MLFLOW_TRACKING_URI=demo.tracking_uri,
                               MODEL_CACHE_DIR=str(tmp_path_factory.mktemp("cache")),
                               SHADOW_MODEL_URI=demo.uri)  # fmt: skip
        yield f"http://127.0.0.1:{port}/"
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def served_without_log(demo, tmp_path_factory):
    """The function without DATABASE_URL, and a file limit of MAX_UPLOAD_BYTES: its base URL."""
    process, port = launch(demo.uri, DATABASE_URL=None, MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES),
                           MLFLOW_TRACKING_URI=demo.tracking_uri,
                           MODEL_CACHE_DIR=str(tmp_path_factory.mktemp("cache")))  # fmt: skip
    yield f"http://127.0.0.1:{port}/"
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("requestfailed", lambda request: page.errors.append(f"{request.url} failed"))
    yield page
    context.close()


def noisy_png(size: int) -> bytes:
    """A PNG that does not compress: tens of KB even when small."""
    pixels = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def phone_photo(sample: Path) -> bytes:
    """A 4000x3000 (12 MP) JPEG with a phone photo's texture: a demo sample enlarged, plus sensor noise."""
    rng = np.random.default_rng(7)
    enlarged = Image.open(sample).convert("RGB").resize((4000, 3000), Image.BICUBIC)
    pixels = np.asarray(enlarged, dtype=np.int16) + rng.integers(-12, 12, (3000, 4000, 3), dtype=np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def open_page(page, url: str):
    page.goto(url)
    page.locator("#model-line").filter(has_text="version").wait_for()
    return page


def give(page, files: list[tuple[str, str, bytes]], how: str) -> None:
    """Photos (name, type, bytes) in as a person gives them: the file picker, a drop, or a paste."""
    if how == "pick":
        page.set_input_files(
            "#file-input", files=[{"name": n, "mimeType": t, "buffer": b} for n, t, b in files]
        )
        return
    contents = list(dict.fromkeys(b for _, _, b in files))  # each distinct file's bytes sent to the page once
    payload = {
        "contents": [base64.b64encode(b).decode() for b in contents],
        "files": [{"name": n, "type": t, "content": contents.index(b)} for n, t, b in files],
    }
    page.evaluate(
        """([payload, how]) => {
            const contents = payload.contents.map((b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
            const transfer = new DataTransfer();
            for (const f of payload.files) {
                transfer.items.add(new File([contents[f.content]], f.name, { type: f.type }));
            }
            const init = { bubbles: true, cancelable: true };
            if (how === "drop") {
                document.getElementById("drop-zone").dispatchEvent(new DragEvent("drop", { ...init, dataTransfer: transfer }));
            } else {
                document.dispatchEvent(new ClipboardEvent("paste", { ...init, clipboardData: transfer }));
            }
        }""",
        [payload, how],
    )


def species(page) -> list[str]:
    """The cards' species, newest first, once none is still classifying."""
    cards = page.locator("#results .species")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results .species')].every((e) => e.textContent !== 'Classifying…')"
    )
    return cards.all_inner_texts()


def test_picked_dropped_and_pasted_photos_are_classified(demo, served, page):
    first, second, third = demo.pick(0), demo.pick(1), demo.pick(2)
    open_page(page, served)
    give(page, [demo.photo(first)], "pick")
    assert species(page) == [first]
    assert f"model version {demo.version}" in page.locator(".result-card .meta").inner_text()

    give(page, [demo.photo(name) for name in (first, second, third)], "drop")
    page.locator("#results .result-card").nth(3).wait_for()
    assert species(page) == [third, second, first, first]

    pasted = demo.pick(3)
    give(page, [demo.photo(pasted)], "paste")
    page.locator("#results .result-card").nth(4).wait_for()
    assert species(page)[0] == pasted
    assert page.errors == []


@pytest.fixture(scope="module")
def twelve_megapixels(demo) -> bytes:
    return phone_photo(demo.photos[demo.pick(0)])


def test_a_12_megapixel_photo_is_decoded_once_and_sent_scaled_down(
    demo, served, page, twelve_megapixels, record_property
):
    """Sent as a 1024 px JPEG, and decoded once for the upload, the card's preview and the history's thumbnail
    (a 12 MP photo is 48 MB decoded: a second decode, or the card showing the file itself, is another)."""
    photo = twelve_megapixels
    # Playwright does not see a FormData body with a Blob in it: the page's fetch says what it sent.
    page.add_init_script("""
        const send = window.fetch;
        window.sentBytes = [];
        window.fetch = (url, options = {}) => {
            if (options.body instanceof FormData) window.sentBytes.push(options.body.get("file").size);
            return send(url, options);
        };
        const decode = window.createImageBitmap;
        window.decodes = 0;
        window.createImageBitmap = (...args) => {
            window.decodes += 1;
            return decode(...args);
        };
    """)
    open_page(page, served)
    give(page, [("IMG_0001.jpg", "image/jpeg", photo)], "pick")
    assert species(page)[0] in demo.classes
    sent = page.evaluate("window.sentBytes")
    record_property("upload_bytes_12mp", {"file": len(photo), "sent": sent[0]})
    print(f"12 MP JPEG of {len(photo):,} bytes: {sent[0]:,} bytes sent")
    assert len(photo) > 2_000_000 and sent[0] < 500_000
    assert page.evaluate("window.decodes") == 1
    preview = page.locator(".result-card .preview")
    preview.and_(page.locator("[src]")).wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=preview.element_handle())
    assert preview.evaluate("img => Math.max(img.naturalWidth, img.naturalHeight)") == 1024


def test_not_an_image_and_too_large_say_why(served_without_log, page):
    open_page(page, served_without_log)
    give(page, [("fish.jpg", "image/jpeg", b"this is a shopping list, not a photo\n" * 3)], "pick")
    assert species(page) == ["Not classified"]
    assert "not an image" in page.locator(".result-card .alert").first.inner_text().lower()

    big = noisy_png(160)
    assert len(big) > MAX_UPLOAD_BYTES
    give(page, [("big.png", "image/png", big)], "pick")
    page.locator("#results .result-card").nth(1).wait_for()
    assert species(page)[0] == "Not classified"
    assert f"limit of {MAX_UPLOAD_BYTES:,}" in page.locator(".result-card .alert").first.inner_text()


def test_a_network_failure_offers_a_retry(demo, served, page):
    name = demo.pick(1)
    open_page(page, served)
    page.route("**/predict", lambda route: route.abort())
    give(page, [demo.photo(name)], "pick")
    alert = page.locator(".result-card .alert")
    alert.wait_for()
    assert "Network failure" in alert.inner_text()
    page.unroute("**/predict")
    alert.get_by_role("button", name="Retry").click()
    page.locator(".result-card .species").filter(has_text=name).wait_for()


def test_at_capacity_says_busy_not_warming_up(demo, served, page):
    """The server's 503 when it is at capacity (function.http.admission) is not a model warming up."""
    name = demo.pick(1)
    shed = json.dumps({"type": "about:blank", "status": 503, "title": "At capacity",
                       "detail": "this instance is answering as many requests as it can (4 at once, "
                                 "MAX_CONCURRENT_REQUESTS); retry in a second"})  # fmt: skip
    open_page(page, served)
    page.route("**/predict", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "1"}, content_type="application/problem+json", body=shed))  # fmt: skip
    give(page, [demo.photo(name)], "pick")
    state = page.locator(".result-card .state")
    state.filter(has_text="at capacity").wait_for()
    assert "warming" not in state.inner_text()
    page.unroute("**/predict")
    page.locator(".result-card .species").filter(has_text=name).wait_for()


def test_each_probability_is_a_meter(demo, served, page):
    """A probability is a measurement, not a task's progress: a meter per class, named, highest first."""
    name = demo.pick(0)
    open_page(page, served)
    give(page, [demo.photo(name)], "pick")
    assert species(page) == [name]
    card = page.locator(".result-card").first
    meters = card.get_by_role("meter")
    assert meters.count() == len(demo.classes) and card.get_by_role("progressbar").count() == 0
    assert meters.first.get_attribute("id") == card.get_by_label(name, exact=True).get_attribute("id")
    values = meters.evaluate_all("meters => meters.map((m) => [m.value, m.min, m.max])")
    assert all(low == 0 and high == 1 for _, low, high in values)
    shares = [value for value, _, _ in values]
    assert shares == sorted(shares, reverse=True) and 0.99 <= sum(shares) <= 1.01
    assert meters.first.get_attribute("aria-valuetext") == f"{shares[0] * 100:.1f}%"


def test_a_card_draws_its_probabilities_once(demo, served, page):
    """The meters are the card's one drawing of the nine numbers: no chart of the same beside them."""
    open_page(page, served)
    give(page, [demo.photo(demo.pick(2))], "pick")
    species(page)
    card = page.locator(".result-card").first
    assert card.locator("canvas").count() == 0
    assert page.evaluate("Object.keys(Chart.instances).length") == 0
    assert card.get_by_role("meter").count() == len(demo.classes)


def test_one_live_region_says_how_the_photos_went(demo, served, page):
    """A screen reader hears a short summary from the page's one live region, not every card as it changes."""
    names = [demo.pick(i) for i in range(3)]
    page.add_init_script("""
        window.announced = [];
        document.addEventListener("DOMContentLoaded", () => {
            const region = document.getElementById("announcer");
            new MutationObserver(() => window.announced.push(region.textContent))
                .observe(region, { childList: true, characterData: true, subtree: true });
        });
    """)
    open_page(page, served)
    give(page, [demo.photo(name) for name in names], "drop")
    page.locator("#results .result-card").nth(2).wait_for()
    assert species(page) == names[::-1]
    live = "[role=status], [role=alert], [role=log], [role=marquee], [role=timer], [aria-live], output"
    assert page.locator("#results").locator(live).count() == 0
    assert page.locator("main").locator(live).evaluate_all("found => found.map((e) => e.id)") == [
        "announcer", "history-status", "stats-status"]  # fmt: skip
    page.locator("#announcer").filter(has_text="3 photos: 3 classified.").wait_for()
    assert page.evaluate("window.announced") == ["Classifying 3 photos…", "3 photos: 3 classified."]

    # Answered here: the stats test counts the only feedback in the database
    page.route("**/feedback", lambda route: route.fulfill(status=204))
    page.locator(".result-card").first.get_by_role("button", name="Right").click()
    page.locator("#announcer").filter(has_text="Thanks: marked right.").wait_for()


def test_ten_dropped_photos_are_sent_a_few_at_a_time(demo, served, page, twelve_megapixels):
    """Ten 12 MP photos dropped at once are decoded and sent a few at a time (each is 48 MB decoded): with every
    answer held back, the page has a few on their way and the rest waiting, never all ten at once."""
    page.add_init_script("""
        const send = window.fetch;
        Object.assign(window, { inFlight: 0, mostInFlight: 0, held: [], holding: true });
        window.fetch = async (url, options = {}) => {
            if (!(options.body instanceof FormData)) return send(url, options);
            window.inFlight += 1;
            window.mostInFlight = Math.max(window.mostInFlight, window.inFlight);
            try {
                if (window.holding) await new Promise((resolve) => window.held.push(resolve));
                return await send(url, options);
            } finally {
                window.inFlight -= 1;
            }
        };
    """)
    open_page(page, served)
    give(page, [(f"IMG_{i:04}.jpg", "image/jpeg", twelve_megapixels) for i in range(10)], "drop")
    page.wait_for_function("""() => window.inFlight + [...document.querySelectorAll('#results .state')]
        .filter((state) => state.textContent.startsWith('Waiting')).length === 10""")
    assert 2 <= page.evaluate("window.mostInFlight") <= 3
    page.evaluate("() => { window.holding = false; window.held.splice(0).forEach((go) => go()); }")
    page.locator("#results .result-card").nth(9).wait_for()
    named = species(page)
    assert len(named) == 10 and len(set(named)) == 1 and named[0] in demo.classes
    assert 2 <= page.evaluate("window.mostInFlight") <= 3


BLOCKED_STORAGE = """
    // What a browser set to block site data does: reading localStorage or sessionStorage throws, IndexedDB refuses
    for (const name of ["localStorage", "sessionStorage"]) {
        Object.defineProperty(window, name, { configurable: true, get() {
            throw new DOMException(`Failed to read the '${name}' property from 'Window': Access is denied for this document.`, "SecurityError");
        } });
    }
    IDBFactory.prototype.open = () => { throw new DOMException("The user denied permission to access the database.", "SecurityError"); };
"""


def test_blocked_site_storage_still_classifies_and_says_history_is_off_once(demo, served, page):
    names = [demo.pick(3), demo.pick(4)]
    page.add_init_script(BLOCKED_STORAGE)
    open_page(page, served)
    give(page, [demo.photo(name) for name in names], "pick")
    page.locator("#results .result-card").nth(1).wait_for()
    assert species(page) == names[::-1]
    note = page.locator("#pane-classify").get_by_text("history is off")
    assert note.count() == 1 and note.is_visible()
    assert page.locator(".result-card .alert").count() == 0
    page.get_by_role("tab", name="History").click()
    page.locator("#history-note").filter(has_text="history is off").wait_for()
    page.locator("#history-status").filter(has_text="No history").wait_for()
    assert page.errors == []


def test_a_corrupt_history_entry_is_dropped_and_the_rest_shown(demo, served_without_log, page):
    name = demo.pick(5)
    open_page(page, served_without_log)
    give(page, [demo.photo(name)], "pick")
    assert species(page) == [name]
    page.evaluate("""() => {
        const kept = JSON.parse(localStorage.getItem("fish.history"));
        localStorage.setItem("fish.history", JSON.stringify([null, ...kept, { prediction_id: 7 }, "a fish"]));
    }""")
    page.reload()
    page.get_by_role("tab", name="History").click()
    page.locator("#history-list li").filter(has_text=name).wait_for()
    assert page.locator("#history-list li").count() == 1
    assert page.locator("#history-status").inner_text() == ""
    assert page.evaluate("JSON.parse(localStorage.getItem('fish.history')).length") == 1

    page.evaluate("localStorage.setItem('fish.history', '[{\"prediction_id\": ')")  # cut short
    page.reload()
    page.get_by_role("tab", name="History").click()
    page.locator("#history-status").filter(has_text="No photos classified").wait_for()
    assert page.evaluate("localStorage.getItem('fish.history')") == "[]"


def test_feedback_survives_a_reload_and_counts_in_the_stats(demo, served, page):
    shown, truth = demo.pick(2), demo.pick(3)
    open_page(page, served)
    give(page, [demo.photo(shown)], "pick")
    assert species(page) == [shown]
    card = page.locator(".result-card").first
    card.get_by_role("button", name="Right").click()
    card.locator(".feedback-state").filter(has_text="marked right").wait_for()
    card.get_by_label("True species").select_option(truth)  # a change of mind: the later word counts
    card.get_by_role("button", name="Wrong").click()
    card.locator(".feedback-state").filter(has_text=f"it is a {truth}").wait_for()

    page.reload()
    page.get_by_role("tab", name="History").click()
    item = page.locator("#history-list li").first
    item.filter(has_text=f"wrong, it is a {truth}").wait_for()
    assert item.locator("img.thumb").count() == 1  # the thumbnail, from IndexedDB
    assert item.locator(".species").inner_text().startswith(shown)

    page.get_by_role("tab", name="Stats").click()
    row = page.locator("#stats-table tbody tr").first
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    # One word counted, the later one: the change of mind replaced "right" (the only feedback in this database).
    assert cells[0] == demo.version and int(cells[2]) >= 1 and cells[5] == "1 (0 right)"
    quality = page.locator("#stats-quality-chart").get_attribute("aria-label")
    assert f"Accuracy on feedback (%): v{demo.version} 0" in quality  # the one word given: wrong
    # The shadow (the same version here) saw the photos too; one label is not a sample, and the tab says so.
    shadow = page.locator("#stats-quality-list .shadow-comparison").first
    shadow.wait_for()
    text = shadow.inner_text()
    assert f"Version {demo.version} (served) against version {demo.version} (shadow)" in text
    assert "agree on 100.0%" in text and "Too few labelled images to conclude: 1 of the 100 needed" in text


def test_another_browser_does_not_see_this_history(demo, served, browser, page):
    open_page(page, served)
    give(page, [demo.photo(demo.pick(0))], "pick")
    species(page)
    page.get_by_role("tab", name="History").click()
    page.locator("#history-list li").first.wait_for()

    other = browser.new_context()
    try:
        stranger = other.new_page()
        open_page(stranger, served)
        stranger.get_by_role("tab", name="History").click()
        stranger.locator("#history-status").filter(has_text="No photos classified").wait_for()
        assert stranger.locator("#history-list li").count() == 0
    finally:
        other.close()


def test_without_the_log_history_stays_in_the_browser_and_stats_are_hidden(demo, served_without_log, page):
    name = demo.pick(4)
    open_page(page, served_without_log)
    assert page.get_by_role("tab", name="Stats").is_hidden()
    give(page, [demo.photo(name)], "pick")
    assert species(page) == [name]
    page.reload()
    page.get_by_role("tab", name="History").click()
    page.locator("#history-list li").filter(has_text=name).wait_for()
    assert "kept in this browser only" in page.locator("#history-note").inner_text()
    assert page.get_by_role("tab", name="Stats").is_hidden()


def test_page_weight_and_a_second_visit_from_the_cache(served, page, record_property):
    """What a first visit downloads, as sent (compressed): a budget that fails if an uncompressed asset or a new
    bundle creeps in; a second visit takes the fingerprinted files from the browser's cache."""
    resources = """() => [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
        .map((e) => ({ name: e.name, sent: e.transferSize, size: e.decodedBodySize }))"""
    open_page(page, served)
    first = page.evaluate(resources)
    sent, size = sum(e["sent"] for e in first), sum(e["size"] for e in first)
    record_property("page_weight_bytes", {"sent": sent, "uncompressed": size, "files": len(first)})
    print(f"page weight: {sent:,} bytes sent for {size:,} bytes in {len(first)} files")
    assert all(e["name"].startswith(served) for e in first)  # nothing from another host
    assert 0 < sent < 200_000 and sent < size / 2

    open_page(page, served)
    again = page.evaluate(resources)
    assert [e["name"] for e in again if "/static/" in e["name"] and e["sent"] > 0] == []


class SlowRegistry(ThreadingHTTPServer):
    """An MLflow registry (the three calls the function makes) that holds the model's download until released."""

    def __init__(self, model: Path):
        self.model, self.release = model.read_bytes(), threading.Event()
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            server = self.server
            if "get-download-uri" in self.path:
                self.answer(b'{"artifact_uri": "mlflow-artifacts:/m"}')
            elif self.path.endswith("/m/model.onnx"):
                server.release.wait(60)
                self.answer(server.model, "application/octet-stream")
            else:
                self.answer(b'{"files": [{"path": "m/model.onnx", "is_dir": false, "file_size": %d}]}'
                            % len(server.model))  # fmt: skip

        def answer(self, body: bytes, media_type: str = "application/json"):
            self.send_response(200)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass


def test_warming_up_then_the_answer(demo, page, tmp_path):
    name = demo.pick(5)
    registry = SlowRegistry(demo.file)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    port = free_port()
    env = {**os.environ, "PORT": str(port), "MODEL_URI": "models:/fish/1",
           "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{registry.server_port}",
           "MODEL_CACHE_DIR": str(tmp_path / "cache"), "SHUTDOWN_DRAIN_SECONDS": "0"}  # fmt: skip
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "function"], env=env)
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.1:{port}/"):
            assert time.monotonic() < deadline and process.poll() is None, "the page was never served"
            time.sleep(0.05)
        page.goto(f"http://127.0.0.1:{port}/")
        give(page, [demo.photo(name)], "pick")
        page.locator(".result-card .state").filter(has_text="warming up").wait_for()
        registry.release.set()
        page.locator(".result-card .species").filter(has_text=name).wait_for()
        page.locator("#model-line").filter(has_text="version 1").wait_for()
    finally:
        registry.release.set()
        process.terminate()
        process.wait(timeout=30)
        registry.shutdown()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_charts_follow_a_switch_between_light_and_dark(demo, served, page):
    """The text colours the stats charts drew with (Chart.js's own label items, made at drawing), not the options,
    which resolve the current default even for a chart never drawn again."""
    page.emulate_media(color_scheme="light")
    open_page(page, served)
    give(page, [demo.photo(demo.pick(0))], "pick")
    species(page)
    page.get_by_role("tab", name="Stats").click()
    page.wait_for_function("() => Chart.getChart(document.getElementById('stats-chart'))")
    drawn_with = """() => {
        const text = getComputedStyle(document.documentElement).getPropertyValue('--bs-body-color').trim();
        const charts = ['stats-chart', 'stats-quality-chart', 'stats-latency-chart']
            .map((id) => Chart.getChart(document.getElementById(id)));
        const colours = charts.flatMap((chart) => [...chart.scales.x.getLabelItems(), ...chart.scales.y.getLabelItems()]
            .map((item) => item.options.color));
        return [[...new Set(colours)], text];
    }"""
    light_drawn, light_text = page.evaluate(drawn_with)
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("() => document.documentElement.dataset.bsTheme === 'dark'")
    dark_drawn, dark_text = page.evaluate(drawn_with)
    assert light_text != dark_text
    assert (light_drawn, dark_drawn) == ([light_text], [dark_text])


@pytest.fixture
def page_for_axe(browser):
    """A page whose CSP lets axe-core's script tag in (the other tests keep the page's CSP and see no errors)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violations(demo, served, page_for_axe, scheme):
    page = page_for_axe
    page.emulate_media(color_scheme=scheme)
    open_page(page, served)
    assert page.locator("html").get_attribute("data-bs-theme") == scheme
    give(page, [demo.photo(demo.pick(6))], "pick")
    species(page)
    found = []
    for tab in ("Classify", "History", "Stats"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_function(  # the tab's fade is over: its own pane shown, fully opaque
            "id => { const pane = document.getElementById(id); return pane.classList.contains('show') && "
            "getComputedStyle(pane).opacity === '1'; }",
            arg=f"pane-{tab.lower()}",
        )
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("async () => (await axe.run()).violations")
        found += [f"{tab}: {v['id']} ({v['impact']}): {v['help']}: {[n['target'] for n in v['nodes']]}" for v in result
                  if v["impact"] in ("serious", "critical")]  # fmt: skip
    assert found == []


def test_screenshots_at_phone_and_desktop_width(demo, served, browser, tmp_path):
    targets = [tmp_path]
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        targets.append(ROOT / "docs" / "screenshots")
    for name, viewport in {"phone": (375, 812), "desktop": (1280, 800)}.items():
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = context.new_page()
            open_page(page, served)
            give(page, [demo.photo(demo.pick(7)), demo.photo(demo.pick(8))], "pick")
            page.locator("#results .result-card").nth(1).wait_for()
            species(page)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport[0], f"{name}: the page is {width} px wide"
            shot = page.screenshot(full_page=name == "phone")
            for folder in targets:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"web-ui-{name}.png").write_bytes(shot)
        finally:
            context.close()
    assert shutil.disk_usage(tmp_path) and (tmp_path / "web-ui-phone.png").stat().st_size > 10_000

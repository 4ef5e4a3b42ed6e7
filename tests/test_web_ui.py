"""The web UI in a real Chromium (Debian's, driven by Playwright) against the real process (`python -m function`)
with the tiny red/green/blue model and a real PostgreSQL: photos in by picker, drop and paste, errors in words,
warming up, feedback and history across reloads and browsers, stats, accessibility, screenshots."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from convert.demo.mlflow_server import free_port
from tests import tiny_onnx
from tests.postgres import fresh_database
from tests.test_function_process import launch

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
TIMEOUT_MS = 20_000


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


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def served(model_path, postgres):
    """The function with the prediction log on: its base URL."""
    with fresh_database(postgres.url, "webui") as database_url:
        process, port = launch(model_path, DATABASE_URL=database_url)
        yield f"http://127.0.0.1:{port}/"
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def served_without_log(model_path):
    """The function without DATABASE_URL, and a file limit of 2,000 bytes: its base URL."""
    process, port = launch(model_path, DATABASE_URL=None, MAX_UPLOAD_BYTES="2000")
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


def png(colour: str, size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), COLOURS[colour]).save(buffer, "PNG")
    return buffer.getvalue()


def noisy_png(size: int) -> bytes:
    """A red picture whose PNG does not compress: tens of KB even when small."""
    pixels = np.random.default_rng(1).integers(0, 90, (size, size, 3), dtype=np.uint8)
    pixels[..., 0] += 150
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def phone_photo() -> bytes:
    """A 4000x3000 (12 MP) JPEG with a phone photo's texture: smooth shapes and sensor noise, reddish."""
    rng = np.random.default_rng(7)
    coarse = Image.fromarray(rng.integers(0, 120, (30, 40, 3), dtype=np.uint8)).resize(
        (4000, 3000), Image.BICUBIC
    )
    pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 12, (3000, 4000, 3), dtype=np.int16)
    pixels[..., 0] += 120
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
    payload = [{"name": n, "type": t, "b64": base64.b64encode(b).decode()} for n, t, b in files]
    page.evaluate(
        """([files, how]) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: f.type }));
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


def test_picked_dropped_and_pasted_photos_are_classified(served, page):
    open_page(page, served)
    give(page, [("red.png", "image/png", png("red"))], "pick")
    assert species(page) == ["red"]
    card = page.locator(".result-card").first
    bars = card.locator("[role=progressbar]")
    assert bars.evaluate_all("bars => bars.map((b) => b.getAttribute('aria-label'))")[0] == "red"
    assert float(bars.first.get_attribute("aria-valuenow")) > 34
    assert card.locator("canvas").get_attribute("aria-label").startswith("Probabilities: red")
    assert "model version local" in card.locator(".meta").inner_text()

    give(page, [(f"{c}.png", "image/png", png(c)) for c in ("red", "green", "blue")], "drop")
    page.locator("#results .result-card").nth(3).wait_for()
    assert species(page) == ["blue", "green", "red", "red"]

    give(page, [("pasted.png", "image/png", png("green"))], "paste")
    page.locator("#results .result-card").nth(4).wait_for()
    assert species(page)[0] == "green"
    assert page.errors == []


def test_a_12_megapixel_photo_is_sent_scaled_down(served, page, record_property):
    photo = phone_photo()
    # Playwright does not see a FormData body with a Blob in it: the page's fetch says what it sent.
    page.add_init_script("""
        const send = window.fetch;
        window.sentBytes = [];
        window.fetch = (url, options = {}) => {
            if (options.body instanceof FormData) window.sentBytes.push(options.body.get("file").size);
            return send(url, options);
        };
    """)
    open_page(page, served)
    give(page, [("IMG_0001.jpg", "image/jpeg", photo)], "pick")
    assert species(page) == ["red"]
    sent = page.evaluate("window.sentBytes")
    record_property("upload_bytes_12mp", {"file": len(photo), "sent": sent[0]})
    print(f"12 MP JPEG of {len(photo):,} bytes: {sent[0]:,} bytes sent")
    assert len(photo) > 2_000_000 and sent[0] < 500_000


def test_not_an_image_and_too_large_say_why(served_without_log, page):
    open_page(page, served_without_log)
    give(page, [("fish.jpg", "image/jpeg", b"this is a shopping list, not a photo\n" * 3)], "pick")
    assert species(page) == ["Not classified"]
    assert "not an image" in page.locator(".result-card .alert").first.inner_text().lower()

    give(page, [("big.png", "image/png", noisy_png(160))], "pick")
    page.locator("#results .result-card").nth(1).wait_for()
    assert species(page)[0] == "Not classified"
    assert "2,000 bytes" in page.locator(".result-card .alert").first.inner_text()


def test_a_network_failure_offers_a_retry(served, page):
    open_page(page, served)
    page.route("**/predict", lambda route: route.abort())
    give(page, [("red.png", "image/png", png("red"))], "pick")
    alert = page.locator(".result-card .alert")
    alert.wait_for()
    assert "Network failure" in alert.inner_text()
    page.unroute("**/predict")
    alert.get_by_role("button", name="Retry").click()
    page.locator(".result-card .species").filter(has_text="red").wait_for()


def test_feedback_survives_a_reload_and_counts_in_the_stats(served, page):
    open_page(page, served)
    give(page, [("blue.png", "image/png", png("blue"))], "pick")
    assert species(page) == ["blue"]
    card = page.locator(".result-card").first
    card.get_by_label("True species").select_option("green")
    card.get_by_role("button", name="Wrong").click()
    card.locator(".feedback-state").filter(has_text="it is a green").wait_for()

    page.reload()
    page.get_by_role("tab", name="History").click()
    item = page.locator("#history-list li").first
    item.filter(has_text="wrong, it is a green").wait_for()
    assert item.locator("img.thumb").count() == 1  # the thumbnail, from IndexedDB
    assert item.locator(".species").inner_text().startswith("blue")

    page.get_by_role("tab", name="Stats").click()
    row = page.locator("#stats-table tbody tr").first
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "local" and int(cells[2]) >= 1 and cells[5].startswith(("1 ", "2 ", "3 "))


def test_another_browser_does_not_see_this_history(served, browser, page):
    open_page(page, served)
    give(page, [("red.png", "image/png", png("red"))], "pick")
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


def test_warming_up_then_the_answer(model_path, page, tmp_path):
    registry = SlowRegistry(model_path)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    port = free_port()
    env = {**os.environ, "PORT": str(port), "MODEL_URI": "models:/tiny/1",
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
        give(page, [("red.png", "image/png", png("red"))], "pick")
        page.locator(".result-card .state").filter(has_text="warming up").wait_for()
        registry.release.set()
        page.locator(".result-card .species").filter(has_text="red").wait_for()
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


@pytest.fixture
def page_for_axe(browser):
    """A page whose CSP lets axe-core's script tag in (the other tests keep the page's CSP and see no errors)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violations(served, page_for_axe, scheme):
    page = page_for_axe
    page.emulate_media(color_scheme=scheme)
    open_page(page, served)
    assert page.locator("html").get_attribute("data-bs-theme") == scheme
    give(page, [("red.png", "image/png", png("red"))], "pick")
    species(page)
    found = []
    for tab in ("Classify", "History", "Stats"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(300)  # the tab's fade
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("async () => (await axe.run()).violations")
        found += [f"{tab}: {v['id']} ({v['impact']}): {v['help']}: {[n['target'] for n in v['nodes']]}" for v in result
                  if v["impact"] in ("serious", "critical")]  # fmt: skip
    assert found == []


def test_screenshots_at_phone_and_desktop_width(served, browser, tmp_path):
    targets = [tmp_path]
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        targets.append(ROOT / "docs" / "screenshots")
    for name, viewport in {"phone": (375, 812), "desktop": (1280, 800)}.items():
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = context.new_page()
            open_page(page, served)
            give(page, [("red.png", "image/png", png("red")), ("blue.png", "image/png", png("blue"))], "pick")
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

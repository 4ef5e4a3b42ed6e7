"""A stand-in MLflow registry for fault tests: the three REST calls the function makes and the artifact download,
answered well, or failing the way registries and the proxies in front of them do."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, VERSION, ALIAS = "fish", "4", "prod"
URI = f"models:/{NAME}@{ALIAS}"
FAULTS = ("500", "html", "hang", "trickle")


class FakeRegistry(ThreadingHTTPServer):
    """`fault`: None answers as MLflow does; "500" an internal error; "html" a 200 login page (a proxy's); "hang"
    reads the request and never answers; "trickle" starts a JSON answer and sends a byte a second, for ever.
    `hold_download`: the model's bytes wait until `release` is set (a model still loading)."""

    daemon_threads = True

    def __init__(self, model: bytes, fault: str | None = None, hold_download: bool = False):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.model, self.fault = model, fault
        self.release = threading.Event()
        if not hold_download:
            self.release.set()
        self.closing = threading.Event()
        self.downloads_started = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def close(self) -> None:
        self.closing.set()
        self.release.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeRegistry

    def do_GET(self):  # noqa: N802 (http.server's naming)
        fault = self.server.fault
        if fault == "hang":
            self.server.closing.wait()
        elif fault == "500":
            self._answer(500, b'{"error_code": "INTERNAL_ERROR", "message": "database is locked"}')
        elif fault == "html":
            self._answer(200, b"<!doctype html><title>Sign in</title><form>...</form>", "text/html")
        elif fault == "trickle":
            self._trickle()
        elif "/registered-models/alias" in self.path:
            self._answer(200, json.dumps({"model_version": {"name": NAME, "version": VERSION}}).encode())
        elif "get-download-uri" in self.path:
            self._answer(200, b'{"artifact_uri": "mlflow-artifacts:/7/abc/artifacts/model"}')
        elif "?path=" in self.path:
            listing = {
                "files": [{"path": "model/model.onnx", "is_dir": False, "file_size": len(self.server.model)}]
            }
            self._answer(200, json.dumps(listing).encode())
        elif self.path.endswith("/model/model.onnx"):
            self.server.downloads_started += 1
            self.server.release.wait()
            self._answer(200, self.server.model, "application/octet-stream")
        else:
            self._answer(404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}')

    def _answer(self, status: int, body: bytes, media_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self):
        """Every read gets a byte well within any socket timeout; only a deadline on the whole answer ends it."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        while not self.server.closing.is_set():
            try:
                self.wfile.write(b" ")
                self.wfile.flush()
            except OSError:  # the function gave up and closed the connection
                return
            time.sleep(1)

    def log_message(self, *args):
        pass

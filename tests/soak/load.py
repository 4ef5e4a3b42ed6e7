"""The soak's load: one thread per connection, each on its own keep-alive connection, sending a fixed cycle of good
and bad uploads to /predict and recording every answer (kind, status, when, how long).

Python threads rather than wrk: every request is followed to its end (a wrk run cuts off what is in flight when its
time is up, and those predictions are still logged, so rows = answers could not be checked exactly), each answer
is matched with what was sent, and the time series has no gaps between slices. What this costs the function's two
cores is measured (the load's CPU seconds) and reported with the figures."""

from __future__ import annotations

import http.client
import io
import itertools
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

BOUNDARY = "soakboundary7MA4YWxkTrZu0gW"
TIMEOUT = "timeout"
CYCLE = "GGGGLGGGCGGGTGGGGOGL"  # spread out, so the heavy and the bad ones do not come in a burst
SOCKET_ERROR = "socket error"


@dataclass(frozen=True)
class Upload:
    kind: str
    body: bytes
    expected: int
    # as curl sends a large body: headers first, the body only after a 100 Continue. The function refuses an
    # oversize body from its Content-Length and closes the connection; a client still sending would race that
    # close (a reset that can discard the 413), so "socket error" would measure the client, not the function.
    expect_continue: bool = False


@dataclass(frozen=True)
class Answer:
    kind: str
    status: int | str  # an HTTP status, TIMEOUT or SOCKET_ERROR
    started: float  # seconds since the load began
    seconds: float

    @property
    def ended(self) -> float:
        return self.started + self.seconds


def mix(photos: dict[str, Path], max_upload_bytes: int) -> list[Upload]:
    """One cycle of the mix, 20 uploads: 15 640x480 JPEGs and 2 12 MP ones (good, 200), a truncated JPEG (422),
    a text file (415) and a JPEG one MiB over MAX_UPLOAD_BYTES (413): 15% bad."""
    small, large = photos["640x480"].read_bytes(), photos["12MP"].read_bytes()
    kinds = {
        "G": Upload("good 640x480", form(small, "fish.jpg", "image/jpeg"), 200),
        "L": Upload("good 12MP", form(large, "big.jpg", "image/jpeg"), 200),
        "C": Upload("corrupt JPEG", form(small[: len(small) // 2], "cut.jpg", "image/jpeg"), 422),
        "T": Upload("text file", form(b"not a fish\n" * 200, "notes.txt", "text/plain"), 415),
        "O": Upload("oversize", form(oversize(max_upload_bytes), "huge.jpg", "image/jpeg"), 413, True),
    }
    return [kinds[letter] for letter in CYCLE]


def form(data: bytes, filename: str, content_type: str) -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n")  # fmt: skip
    return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def oversize(max_upload_bytes: int) -> bytes:
    """A real JPEG (noise, so it does not compress) padded past the limit by a MiB: over the body limit too."""
    buffer = io.BytesIO()
    Image.effect_noise((1024, 1024), 100).convert("RGB").save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    return data + b"\0" * (max_upload_bytes + 2**20 - len(data))


class Load:
    def __init__(self, port: int, uploads: list[Upload], client_id: str, timeout_s: float = 60.0):
        self.port, self.client_id, self.timeout_s = port, client_id, timeout_s
        self._next = itertools.cycle(uploads)
        self._lock = threading.Lock()
        self.answers: list[Answer] = []
        self.cpu_seconds = 0.0

    def run(self, seconds: float, connections: int) -> list[Answer]:
        """Send for `seconds`, then let every request in flight finish."""
        self._began = time.perf_counter()
        cpu = time.process_time()
        threads = [threading.Thread(target=self._connection, args=(seconds,)) for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.cpu_seconds = time.process_time() - cpu
        return self.answers

    def once(self, upload: Upload) -> int | str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
        try:
            return self._send(connection, upload)
        finally:
            connection.close()

    def _connection(self, seconds: float) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
        while (started := time.perf_counter()) - self._began < seconds:
            with self._lock:
                upload = next(self._next)
            status = self._send(connection, upload)
            answer = Answer(upload.kind, status, started - self._began, time.perf_counter() - started)
            with self._lock:
                self.answers.append(answer)
        connection.close()

    def _send(self, connection: http.client.HTTPConnection, upload: Upload) -> int | str:
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "X-Client-Id": self.client_id}
        try:
            if upload.expect_continue:
                return self._send_expecting_continue(upload, headers)
            connection.request("POST", "/predict", upload.body, headers)
            response = connection.getresponse()
            response.read()
            return response.status
        except TimeoutError:
            connection.close()
            return TIMEOUT
        except (OSError, http.client.HTTPException):
            connection.close()  # the next request opens a new connection
            return SOCKET_ERROR

    def _send_expecting_continue(self, upload: Upload, headers: dict[str, str]) -> int:
        """On a connection of its own (http.client cannot wait for a 100): the status of the final answer."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        with socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout_s) as sock:
            sock.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: {len(upload.body)}\r\n"
                         "Expect: 100-continue\r\nConnection: close\r\n\r\n".encode())  # fmt: skip
            status, rest = _status(sock, b"")
            if status == 100:
                sock.sendall(upload.body)
                status, _ = _status(sock, rest)
            return status


def _status(sock: socket.socket, received: bytes) -> tuple[int, bytes]:
    """The status of the next response head on `sock`, and what was read after that head."""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise http.client.RemoteDisconnected("closed before a response")
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest

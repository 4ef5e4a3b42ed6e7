"""Problem details answered below Litestar (by the pure ASGI middlewares, or by the server on the socket): the
same RFC 9457 body the app's problems have, built from bytes, with no routing and no body read."""

from __future__ import annotations

import json


def problem_json(status: int, title: str, detail: str) -> bytes:
    return json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()


async def send_problem(send, status: int, body: bytes, close: bool, *extra: tuple[bytes, bytes]) -> None:
    """`body` from problem_json; `close`: the connection closes after it (a body left unread, say)."""
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
               *extra, *([(b"connection", b"close")] if close else [])]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

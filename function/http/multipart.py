"""A multipart/form-data body read into memory, its parts in the order sent.

Litestar's own form parser writes every file larger than 1 MiB to a temporary file (a fixed threshold): every
phone photo went to /tmp and was read back, on a volume the image shares with the model cache. Here a part is
bytes in memory. What one request may hold is already bounded by the body limit Litestar's stream enforces
(MAX_UPLOAD_BYTES, or MAX_BATCH_BYTES for a batch), and how many requests hold uploads at once by admission
control: the disk saves no memory, since the image is decoded from bytes in memory anyway."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Request
from litestar.exceptions import ClientException, ValidationException
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from function.inference.images import UnsupportedImage

MULTIPART = "multipart/form-data"


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None  # None: a plain form field, not a file
    data: bytes


class Form(list[Part]):
    """The parts in the order sent."""

    def named(self, name: str) -> list[Part]:
        return [part for part in self if part.name == name]

    def names(self) -> str:
        """The fields sent, for a message: 'a, b', or 'none'."""
        return ", ".join(sorted({part.name for part in self})) or "none"


async def read_form(request: Request, instruction: str) -> Form:
    """The request's parts, or UnsupportedImage with `instruction` (what to send) when it is not multipart."""
    media_type, options = request.content_type
    if media_type != MULTIPART:
        raise UnsupportedImage(
            f"{instruction} (got {request.headers.get('content-type') or 'no content type'})"
        )
    boundary = options.get("boundary")
    if not boundary:
        raise ValidationException("multipart boundary missing in Content-Type")
    parts = Form()
    segment: MultipartSegment | None = None
    chunks: list[bytes] = []
    parser = PushMultipartParser(boundary.encode(), max_segment_count=request.app.multipart_form_part_limit)
    try:
        async for chunk in request.stream():
            for event in parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    segment, chunks = event, []
                elif event:
                    chunks.append(event)
                elif segment is not None:  # the end of a part
                    parts.append(Part(segment.name, segment.filename or None, b"".join(chunks)))
                    segment, chunks = None, []
            if parser.closed:  # the closing boundary: what follows is an epilogue, unread
                break
        else:
            for _ in parser.parse(b""):  # the body ended first: raises, for a part left open
                pass
    except ParserLimitReached:
        limit = request.app.multipart_form_part_limit
        raise ClientException(f"the form has more than {limit} parts") from None
    except ParserError as exc:
        raise ClientException(f"invalid multipart/form-data: {exc}") from None
    return parts

"""CloudEvents 1.0 over HTTP, read and written with the `cloudevents` SDK: which image an event carries, and the
prediction event that answers it. No web framework here; `function.http.routes.events` is the door.

The function takes one event type, `IMAGE_SUBMITTED`, in either content mode Knative delivers:
- binary: `ce-*` headers, the body is the image (`Content-Type: image/jpeg`, `image/png`, ...);
- structured: `Content-Type: application/cloudevents+json`, the image in `data_base64`.
In either mode the data may instead be JSON naming the image, `{"image_url": "https://..."}` (the form storage
notifications take), fetched only from the operator's allowed prefixes (`function.inference.image_urls`).

It answers with one `PREDICTION_COMPLETED` event, in the mode of the request. A Trigger that filters on the
request's type therefore never receives the reply, so the two cannot loop.

The SDK is imported on the first event, not at start: most deployments take their images by upload."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudevents.core.bindings.http import HTTPMessage
    from cloudevents.core.v1.event import CloudEvent

IMAGE_SUBMITTED = "com.example.fish.image.submitted"
PREDICTION_COMPLETED = "com.example.fish.prediction.completed"
STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
IMAGE_TYPES = ("image/", "application/octet-stream")
MAX_KEY_BYTES = 1024  # an event's id and source each: they are the prediction log's unique key


class EventRejected(ValueError):
    """Not an event this function takes: attributes missing, another type, or data that is not an image. A 4xx,
    which Knative does not redeliver."""


class EventDataUnsupported(EventRejected):
    """The event's data is neither an image nor JSON naming one."""


@dataclass(frozen=True)
class ImageEvent:
    source: str
    id: str
    mode: str  # binary or structured: the reply's mode
    image: bytes | None  # the image itself, or
    image_url: str | None  # where to fetch it


@functools.cache
def _format():
    """JSON as the SDK reads it, except that data which is not JSON stays bytes: the SDK's own reader turns any
    body that happens to be valid UTF-8 (a tiny GIF, say) into text."""
    from cloudevents.core.formats.json import JSONFormat

    class Format(JSONFormat):
        def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
            if datacontenttype and self.JSON_CONTENT_TYPE_PATTERN.match(datacontenttype.strip().lower()):
                return super().read_data(body, datacontenttype)
            return body or None

    return Format()


def _strict_v1(attributes: dict[str, Any], data: Any) -> CloudEvent:
    """The SDK's v1 event, without its defaults: it would invent an `id` for an event that has none, and a
    redelivered event must be recognised by the id its producer gave it."""
    from cloudevents.core.v1.event import REQUIRED_ATTRIBUTES, CloudEvent

    missing = [name for name in REQUIRED_ATTRIBUTES if not attributes.get(name)]
    if missing:
        raise EventRejected(f"the event lacks the required attribute(s) {', '.join(missing)}")
    if attributes["specversion"] != "1.0":
        raise EventRejected(
            f"CloudEvents specversion {attributes['specversion']!r} is not supported; send 1.0"
        )
    for name in ("id", "source"):  # the log's unique key: PostgreSQL text, and an index entry
        value = attributes[name]
        try:
            size = len(value.encode()) if isinstance(value, str) else None
        except UnicodeEncodeError:  # a lone surrogate from JSON
            size = None
        if size is None or size > MAX_KEY_BYTES or "\x00" in value:
            raise EventRejected(
                f"the event's {name} must be text of at most {MAX_KEY_BYTES} UTF-8 bytes, no NUL"
            )
    return CloudEvent(attributes, data)


def read(headers: Mapping[str, str], body: bytes) -> ImageEvent:
    """The image event in an HTTP request, or EventRejected saying what is wrong with it."""
    from cloudevents.core.bindings import http as ce_http
    from cloudevents.core.exceptions import BaseCloudEventException

    content_type = headers.get("content-type", "")
    binary = any(name.lower().startswith("ce-") for name in headers)
    if not binary and not content_type.startswith(STRUCTURED):
        if content_type.startswith(BATCHED):
            raise EventRejected("batched CloudEvents are not supported: send one event a request")
        raise EventRejected(
            "not a CloudEvent: send ce-specversion, ce-id, ce-source and ce-type headers with the image as the "
            f"body (binary mode), or {STRUCTURED} (structured mode)"
        )
    message = ce_http.HTTPMessage(dict(headers), body)
    try:
        if binary:
            event = ce_http.from_binary(message, _format(), _strict_v1)
        else:
            event = ce_http.from_structured(message, _format(), _strict_v1)
    except EventRejected:
        raise
    except (BaseCloudEventException, ValueError, TypeError, AttributeError) as exc:  # bad JSON, time, base64
        raise EventRejected(f"the CloudEvent cannot be read: {_first_line(exc)}") from exc
    if event.get_type() != IMAGE_SUBMITTED:
        raise EventRejected(f"this function takes events of type {IMAGE_SUBMITTED}, not {event.get_type()!r}")
    image, image_url = _image_of(event)
    return ImageEvent(
        event.get_source(), event.get_id(), "binary" if binary else "structured", image, image_url
    )


def _image_of(event: CloudEvent) -> tuple[bytes | None, str | None]:
    data, content_type = event.get_data(), (event.get_datacontenttype() or "").lower()
    if isinstance(data, bytes) and content_type.startswith(IMAGE_TYPES):
        return data, None
    if isinstance(data, dict) and isinstance(data.get("image_url"), str):
        return None, data["image_url"]
    if data is None:
        raise EventDataUnsupported('the event has no data: send the image, or JSON {"image_url": ...}')
    raise EventDataUnsupported(
        f"the event's data ({content_type or 'no datacontenttype'}) is neither an image (image/*, in the body or "
        'in data_base64) nor JSON {"image_url": "..."}'
    )


def reply(
    request: ImageEvent, prediction: dict[str, Any], prediction_id: str, source: str, time: dt.datetime
) -> HTTPMessage:
    """The prediction as an event, in the request's mode. Its id is the prediction's and its time the
    prediction's, so a redelivered request, answered from the log, gets the same reply event."""
    from cloudevents.core.bindings import http as ce_http
    from cloudevents.core.v1.event import CloudEvent

    event = CloudEvent(
        {
            "type": PREDICTION_COMPLETED,
            "source": source,
            "id": prediction_id,
            "subject": request.id,
            "time": time,
            "datacontenttype": "application/json",
        },
        prediction,
    )
    write = ce_http.to_binary if request.mode == "binary" else ce_http.to_structured
    return write(event, _format())


def reply_source(service: str | None, revision: str | None) -> str:
    """The reply's `source`: the Knative service and revision that classified the image."""
    path = f"/{service or 'fish-function'}"
    return f"{path}/revisions/{revision}" if revision else path


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]

"""Every error a client can get, as RFC 9457 problem details (`application/problem+json`), from one table.

Domain errors carry no HTTP status; the table below gives them one. Litestar's own errors (a body over the size
limit, a query parameter of the wrong type, an unknown path) go through the same plugin, and anything else is a
500 that names no internals (the traceback goes to the log)."""

from __future__ import annotations

import logging
import re
import sys
import tempfile
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from function.inference import image_urls, images
from function.inference.outcome import ParameterOutOfRange
from function.model.slot import ModelNotReady
from function.prediction_log import LogDisabled, LogUnavailable
from function.protocols import cloudevents
from function.settings import Settings

log = logging.getLogger("function")


class MissingFile(ValueError):
    """The request did not carry an image in the multipart field `file`."""


class MissingClientId(ValueError):
    """A history read without a usable X-Client-Id (or a malformed one on any request)."""


class UnknownPrediction(LookupError):
    """Feedback on a prediction id this service never issued."""


class FeedbackInvalid(ValueError):
    """Feedback naming a class the model does not have, or 'wrong' without saying what it is."""


DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    ParameterOutOfRange: (400, "Parameter out of range"),
    images.ImageTooLarge: (413, "Image too large"),
    images.UnsupportedImage: (415, "Unsupported image"),
    images.CorruptImage: (422, "Corrupt image"),
    MissingFile: (422, "No image in the request"),
    MissingClientId: (400, "No client id"),
    UnknownPrediction: (404, "Unknown prediction"),
    FeedbackInvalid: (422, "Feedback not understood"),
    LogDisabled: (503, "Prediction log off"),
    LogUnavailable: (503, "Prediction log unavailable"),
    cloudevents.EventRejected: (400, "Not an image event"),
    cloudevents.EventDataUnsupported: (415, "Unsupported event data"),
    image_urls.ImageUrlRefused: (403, "Image URL not allowed"),
    image_urls.ImageUrlUnreadable: (422, "Image URL unreadable"),
    image_urls.ImageUrlFailed: (502, "Image URL failed"),
}


# The top folders a path on this server starts with: the usual ones, and those of this code, its Python and its
# temporary files. A detail is text a client acts on, never a map of the server (nor a traceback).
_ROOTS = {"app", "bin", "dev", "etc", "home", "lib", "lib64", "mnt", "nix", "opt", "private", "proc", "root"}
_ROOTS |= {"run", "sbin", "srv", "sys", "tmp", "Users", "usr", "var", "workspace"}
_ROOTS |= {
    Path(place).resolve().parts[1] for place in (__file__, sys.prefix, tempfile.gettempdir(), Path.cwd())
}
_SEGMENT = r"[^\s/:;,()'\"<>]"
_SERVER_PATH = re.compile(
    rf"(?<![\w.~:/-])/(?:{'|'.join(map(re.escape, sorted(_ROOTS)))})(?!{_SEGMENT})(?:/{_SEGMENT}*)*"
)


def safe(text: str) -> str:
    """`text` without a traceback, and each path on the server cut to its last name (`.../missing.onnx` still
    says what is missing): exception text can carry either, from a library or from our own messages."""
    text = text.split("Traceback (most recent call last)")[0].rstrip()
    return _SERVER_PATH.sub(lambda found: ".../" + found.group().rstrip("/").rsplit("/", 1)[-1], text)


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra
) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=status,
        type_="about:blank",
        title=title,
        detail=safe(detail),
        headers=headers,
        extra=extra or None,
    )


def plugin(settings: Settings) -> ProblemDetailsPlugin:
    def domain(status: int, title: str) -> Callable[[Exception], ProblemDetailsException]:
        return lambda exc: problem(status, title, str(exc))

    def http(exc: HTTPException) -> ProblemDetailsException:
        title = HTTPStatus(exc.status_code).phrase
        if exc.status_code == 413:  # the body limit, before the file is even parsed
            detail = f"the upload is larger than the limit of {settings.max_upload_bytes:,} bytes (MAX_UPLOAD_BYTES)"
            return problem(413, "Image too large", detail)
        if isinstance(exc, ValidationException):
            errors = [_safe_error(error) for error in exc.extra or []] if isinstance(exc.extra, list) else []
            return problem(400, title, exc.detail, errors=errors)
        # The headers too: a 405's Allow (RFC 9110), a 429's or 503's Retry-After
        return problem(exc.status_code, title, exc.detail, headers=exc.headers)

    def internal(exc: Exception) -> ProblemDetailsException:
        log.error("unhandled error", exc_info=exc)
        return problem(500, "Internal error", "the server failed to answer this request; the error is logged")

    def not_ready(exc: ModelNotReady) -> ProblemDetailsException:
        return problem(503, "Model not ready", str(exc), headers={"Retry-After": str(exc.retry_after_s)})

    mapping: dict = {kind: domain(*status_title) for kind, status_title in DOMAIN_ERRORS.items()}
    mapping |= {ModelNotReady: not_ready, HTTPException: http, Exception: internal}
    return ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=mapping))


def status_of(error: Exception) -> tuple[int, str]:
    """The status and title /predict answers for a domain error: the nearest class in the one table. Raises
    `error` itself when it is not the client's fault (the request becomes a 500)."""
    for kind in type(error).__mro__:
        if kind in DOMAIN_ERRORS:
            return DOMAIN_ERRORS[kind]
    raise error


def _safe_error(error):
    """One of a validation error's `errors` ({"message", "key", "source"}), its text made safe."""
    if isinstance(error, dict):
        return {key: safe(value) if isinstance(value, str) else value for key, value in error.items()}
    return safe(str(error))

"""Prometheus metrics, defined once at import."""

from prometheus_client import Counter, Gauge, Histogram

PREDICTIONS = Counter(
    "predictions_total", "Predictions served, by class and confidence bucket", ["class", "confidence_bucket"]
)
PREDICTION_LATENCY = Histogram(
    "prediction_latency_seconds",
    "Decode + resize + inference time of one prediction",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
MODEL_INFO = Gauge(
    "model_info", "The model being served (value 1)", ["name", "version", "precision", "source_version"]
)
SHADOW_MODEL_INFO = Gauge(
    "shadow_model_info",
    "The shadow model (SHADOW_MODEL_URI), answering no one (value 1)",
    ["name", "version", "precision", "source_version"],
)
SHADOW_PREDICTIONS = Counter(
    "shadow_predictions_total", "Predictions the shadow model made beside the served one"
)
SHADOW_SKIP_REASONS = ("sampled_out", "busy", "load", "size", "error", "no_model")
SHADOW_SKIPPED = Counter(
    "shadow_skipped_total",
    "Predictions the shadow model did not see: sampled_out, busy (one running, one waiting), load (every worker "
    "busy), size (a tensor at the served model's size only), error, no_model (not loaded)",
    ["reason"],
)
for _reason in SHADOW_SKIP_REASONS:  # every series from 0, so rate() sees the first skip
    SHADOW_SKIPPED.labels(_reason)
DRIFT_PSI = Gauge(
    "prediction_drift_psi",
    "Population stability index of a version's predictions, the last day against its first (0.1 watch, 0.25 act); "
    "updated whenever /stats is read (the UI's Stats tab reads it)",
    ["model_version", "revision", "distribution"],
)
REJECTED_IMAGES = Counter("rejected_images_total", "Uploads refused as not classifiable", ["reason"])
EVENTS = Counter("cloudevents_received_total", "CloudEvents received, by content mode", ["mode"])
SHED_REQUESTS = Counter(
    "requests_shed_total", "Requests answered 503 at once because MAX_CONCURRENT_REQUESTS were already in"
)
SLOW_UPLOADS = Counter("slow_uploads_total", "Requests answered 408: their body stalled or came too slowly")
EVENT_DUPLICATES = Counter(
    "cloudevents_duplicates_total", "Events delivered again and answered from the log, not logged again"
)

# Every answer a client saw, counted once with its real status where it leaves the app (function.http.request_metrics)
# or uvicorn (its own 400s), under the names and labels of Litestar's Prometheus middleware, which the dashboard
# reads: that middleware sits inside Litestar, where it misses what the layers in front answer (a shed 503, a slow
# body's 408, which it saw as the 500 of the disconnect) and what uvicorn answers (a request it cannot parse).
APP_NAME = "fish-function"
HTTP_LABELS = ["method", "path", "status_code", "app_name"]
HTTP_REQUESTS = Counter("http_requests_total", "Requests answered, by route and the status sent", HTTP_LABELS)
HTTP_ERRORS = Counter("http_requests_error_total", "Requests answered with a 5xx status", HTTP_LABELS)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "From the request's headers to its answer's last byte", HTTP_LABELS
)
HTTP_IN_PROGRESS = Gauge(
    "http_requests_in_progress", "Requests being answered", ["method", "path", "app_name"]
)


def count_answer(method: str, path: str, status: int, duration_s: float) -> None:
    labels = (method, path, str(status), APP_NAME)
    HTTP_REQUESTS.labels(*labels).inc()
    HTTP_DURATION.labels(*labels).observe(duration_s)
    if status >= 500:
        HTTP_ERRORS.labels(*labels).inc()


def confidence_bucket(confidence: float) -> str:
    """Coarse buckets keep the label set small: <0.5, 0.5-0.8, 0.8-0.95, >=0.95."""
    for bound, label in ((0.5, "lt_0.5"), (0.8, "0.5_0.8"), (0.95, "0.8_0.95")):
        if confidence < bound:
            return label
    return "ge_0.95"


def record_drift(
    version: str, revision: str | None, class_mix: float | None, confidence: float | None
) -> None:
    for distribution, value in (("class_mix", class_mix), ("confidence", confidence)):
        if value is not None:
            DRIFT_PSI.labels(version, revision or "", distribution).set(value)

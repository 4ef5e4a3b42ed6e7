"""Prometheus metrics, defined once at import (HTTP request metrics come from Litestar's middleware)."""

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
REJECTED_IMAGES = Counter("rejected_images_total", "Uploads refused as not classifiable", ["reason"])
EVENTS = Counter("cloudevents_received_total", "CloudEvents received, by content mode", ["mode"])
SHED_REQUESTS = Counter(
    "requests_shed_total", "Requests answered 503 at once because MAX_CONCURRENT_REQUESTS were already in"
)
SLOW_UPLOADS = Counter("slow_uploads_total", "Requests answered 408: their body stalled or came too slowly")
EVENT_DUPLICATES = Counter(
    "cloudevents_duplicates_total", "Events delivered again and answered from the log, not logged again"
)


def confidence_bucket(confidence: float) -> str:
    """Coarse buckets keep the label set small: <0.5, 0.5-0.8, 0.8-0.95, >=0.95."""
    for bound, label in ((0.5, "lt_0.5"), (0.8, "0.5_0.8"), (0.95, "0.8_0.95")):
        if confidence < bound:
            return label
    return "ge_0.95"

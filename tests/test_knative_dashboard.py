"""The Grafana dashboard asks only for what the function exposes: the app runs in-process on the tiny model with
prediction logging on (a real PostgreSQL), serves a prediction and a refused upload, and every metric and label
in the dashboard's PromQL must be in its /metrics, or be one the scrape adds (the PodMonitor's relabelings,
the Prometheus Operator's target labels)."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
import yaml
from litestar.testing import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from function.app import create_app
from function.settings import Settings
from tests import tiny_onnx
from tests.postgres import fresh_database, write_rows
from tests.readiness import wait_healthy

MONITORING = Path(__file__).resolve().parents[1] / "knative" / "monitoring"
# Labels every scraped series gets from the Prometheus Operator, besides the PodMonitor's relabelings.
TARGET_LABELS = {"namespace", "pod", "container", "endpoint", "job", "instance"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")


def panel_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def dashboard_queries() -> list[str]:
    """The panels' expressions and the template variables' label_values(selector, label) as PromQL."""
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return panel_queries() + [
        re.sub(r"^label_values\((.*),\s*(\w+)\)$", r"sum by (\2) (\1)", q) for q in variables
    ]


def metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression: identifiers that are not functions, keywords, labels or ranges."""
    bare = _MATCHERS.sub("", _GROUPING.sub("", _STRING.sub('""', expr)))
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    return {n for n in re.findall(r"\b[a-zA-Z_:][\w:]*\b(?!\s*\()", bare) if n not in PROMQL_WORDS}


def label_names(expr: str) -> set[str]:
    expr = _STRING.sub('""', expr)
    grouped = {n.strip() for group in _GROUPING.findall(expr) for n in group.split(",") if n.strip()}
    matched = {m.group(1) for body in _MATCHERS.findall(expr) for m in re.finditer(r"(\w+)\s*[=!]", body)}
    return grouped | matched


def relabelled() -> set[str]:
    monitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text())
    return {
        r["targetLabel"] for e in monitor["spec"]["podMetricsEndpoints"] for r in e.get("relabelings", [])
    }


def test_the_parser_finds_names_and_labels():
    expr = 'histogram_quantile(0.99, sum by (revision, le) (rate(a_bucket{path!~"/x|{y}", s="v"}[$__rate_interval]))) / b'
    assert metric_names(expr) == {"a_bucket", "b"}
    assert label_names(expr) == {"revision", "le", "path", "s"}


def test_every_panel_the_brief_asks_for_is_there_by_revision():
    queries = panel_queries()
    wanted = {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "predictions_total",
        "prediction_log_queue_depth",
        "prediction_log_rows_written_total",
        "prediction_log_write_failures_total",
        "prediction_log_dropped_total",
        "prediction_log_rows_rejected_total",
        "model_info",
        "shadow_predictions_total",
        "shadow_skipped_total",
        "prediction_drift_psi",
    }
    assert wanted <= set().union(*map(metric_names, queries))
    assert all("revision" in label_names(q) for q in queries)
    assert {"class", "confidence_bucket", "status_code"} <= set().union(*map(label_names, queries))


@pytest.fixture(scope="module")
def database(postgres):
    """The URL of a new, empty database on the session's server, dropped after the test."""
    with fresh_database(postgres.url, "dashboard") as url:
        yield url


@pytest.fixture(scope="module")
def exposed(database, tmp_path_factory) -> dict[str, set[str]]:
    """Sample name -> label names, from /metrics after a prediction was served (and seen by the shadow) and
    written to the log, and /stats read over a log with a reference day and a recent one (drift)."""
    model = tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")
    settings = Settings.from_env({"MODEL_URI": str(model), "DATABASE_URL": database,
                                  "K_REVISION": "fish-function-00001", "SHADOW_MODEL_URI": str(model)})  # fmt: skip
    log_two_days(database)
    photo = io.BytesIO()
    Image.new("RGB", (12, 12), (200, 10, 10)).save(photo, "PNG")
    with TestClient(create_app(settings)) as client:
        wait_healthy(client)
        assert (
            client.post("/predict", files={"file": ("fish.png", photo.getvalue(), "image/png")}).status_code
            == 200
        )
        assert (
            client.post("/predict", files={"file": ("fish.png", b"not an image", "image/png")}).status_code
            == 415
        )
        deadline = time.monotonic() + 30
        while "prediction_log_rows_written_total 0.0" in (text := client.get("/metrics").text):
            assert time.monotonic() < deadline, "the prediction was never written to PostgreSQL"
            time.sleep(0.1)
        assert client.get("/stats").status_code == 200  # sets the drift gauges
        text = client.get("/metrics").text
    return {
        sample.name: set(sample.labels)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def log_two_days(database: str) -> None:
    """60 predictions three days ago and 60 in the last hour: enough for a drift index."""
    from datetime import UTC, datetime, timedelta

    from tests.test_function_log import make_row

    days = (datetime.now(UTC) - timedelta(days=3), datetime.now(UTC) - timedelta(hours=1))
    write_rows(database, [make_row(created_at=at + timedelta(seconds=i), revision="fish-function-00001")
                          for at in days for i in range(60)])  # fmt: skip


@pytest.mark.parametrize("query", dashboard_queries())
def test_dashboard_query_uses_only_exposed_metrics_and_labels(query, exposed):
    names = metric_names(query)
    assert names and names <= exposed.keys(), f"not in /metrics: {names - exposed.keys()}"
    known = set().union(*(exposed[n] for n in names)) | relabelled() | TARGET_LABELS
    assert label_names(query) <= known, f"labels no series has: {label_names(query) - known}"

"""Knative Serving's admission-webhook rules that its CRD schemas cannot express, checked offline.

Read from knative/serving's `pkg/apis` (autoscaling/annotation_validation.go, serving/metadata_validation.go,
serving/k8s_validation.go, serving/v1/revision_validation.go and route_validation.go) and written again for the
rules DESIGN.md lists. Each rule takes one rendered object and yields what is wrong with it; where a rule is
stricter than Knative, its docstring says so."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

AUTOSCALING = "autoscaling.knative.dev/"
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
PORT_NAMES = {"", "http1", "h2c"}
TARGET_MIN = 0.01
WINDOW_MIN_S, WINDOW_MAX_S = 6, 3600
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def is_serving(obj: dict, *kinds: str) -> bool:
    return obj.get("apiVersion", "").startswith("serving.knative.dev/") and obj.get("kind") in kinds


def template(obj: dict) -> dict:
    return obj.get("spec", {}).get("template", {})


def containers(obj: dict) -> list[dict]:
    return template(obj).get("spec", {}).get("containers", [])


def autoscaling_annotations_on_the_template(obj: dict) -> Iterator[str]:
    """A Service's or Configuration's own annotations may not be autoscaling ones: they would do nothing."""
    if is_serving(obj, "Service", "Configuration"):
        for key in obj.get("metadata", {}).get("annotations") or {}:
            if key.startswith(AUTOSCALING):
                yield f"{key} is on metadata.annotations; put it under spec.template.metadata.annotations"


def string_values(obj: dict) -> Iterator[str]:
    """Annotations and labels are strings: an unquoted YAML number or boolean is refused (min-scale: 0)."""
    for where, meta in (
        ("metadata", obj.get("metadata", {})),
        ("template", template(obj).get("metadata", {})),
    ):
        for field in ("annotations", "labels"):
            for key, value in (meta.get(field) or {}).items():
                if not isinstance(value, str):
                    yield f"{where}.{field}[{key}] is {value!r}, not a string"


def autoscaling_bounds(obj: dict) -> Iterator[str]:
    """The bounds Knative puts on the revision's autoscaling annotations (the class is the default, KPA)."""
    if not is_serving(obj, "Service", "Configuration"):
        return
    annotations = {
        k.removeprefix(AUTOSCALING): v
        for k, v in (template(obj).get("metadata", {}).get("annotations") or {}).items()
        if k.startswith(AUTOSCALING) and isinstance(v, str)
    }
    scales = {}
    for name in ("min-scale", "max-scale", "initial-scale"):
        if name in annotations:
            scales[name] = _int(annotations[name])
            if scales[name] is None or scales[name] < 0:
                yield f"{name} {annotations[name]!r} is not an integer >= 0"
    low, high = scales.get("min-scale") or 0, scales.get("max-scale") or 0
    if high and high < low:
        yield f"max-scale {high} is less than min-scale {low}"
    if "activation-scale" in annotations:
        activation = _int(annotations["activation-scale"])
        if activation is None or activation < 2:
            yield f"activation-scale {annotations['activation-scale']!r} must be an integer >= 2"
        elif activation < low or (high and activation > high):
            yield f"activation-scale {activation} is outside min-scale {low} .. max-scale {high or 'unbounded'}"
    if "target" in annotations:
        target = _float(annotations["target"])
        if target is None or target < TARGET_MIN:
            yield f"target {annotations['target']!r} must be a number >= {TARGET_MIN}"
    if "target-utilization-percentage" in annotations:
        percent = _float(annotations["target-utilization-percentage"])
        if percent is None or not 1 <= percent <= 100:
            yield f"target-utilization-percentage {annotations['target-utilization-percentage']!r} is outside 1-100"
    if "window" in annotations:
        window = go_duration_s(annotations["window"])
        if window is None or not WINDOW_MIN_S <= window <= WINDOW_MAX_S or window != int(window):
            yield f"window {annotations['window']!r} must be whole seconds from 6s to 1h"
    if annotations.get("metric", "concurrency") not in ("concurrency", "rps"):
        yield f"metric {annotations['metric']!r} is neither concurrency nor rps"


def one_container_port(obj: dict) -> Iterator[str]:
    """At most one port across all containers, named http1, h2c or nothing: the one the queue-proxy calls."""
    if not is_serving(obj, "Service", "Configuration"):
        return
    ports = [p for c in containers(obj) for p in c.get("ports") or []]
    if len(ports) > 1:
        yield f"{len(ports)} container ports; Knative allows one"
    for port in ports[:1]:
        if port.get("name", "") not in PORT_NAMES:
            yield f"port name {port['name']!r} is not http1, h2c or empty"


def no_reserved_env(obj: dict) -> Iterator[str]:
    """Knative sets PORT, K_SERVICE, K_CONFIGURATION and K_REVISION itself. Stricter than Knative: no K_* at
    all, since Knative and its bindings (K_SINK, K_CE_OVERRIDES) own that prefix."""
    if not is_serving(obj, "Service", "Configuration"):
        return
    for container in containers(obj):
        for env in container.get("env") or []:
            if env.get("name") in RESERVED_ENV or env.get("name", "").startswith("K_"):
                yield f"container {container.get('name')!r} sets {env['name']}, which Knative sets"


def revision_names_prefixed(obj: dict) -> Iterator[str]:
    """A Service's revision names start with '<service>-'. Stricter than Knative: the revisions its traffic
    names too, since a revision of this Service is always so named."""
    if not is_serving(obj, "Service"):
        return
    prefix = obj["metadata"]["name"] + "-"
    named = [template(obj).get("metadata", {}).get("name")]
    named += [t.get("revisionName") for t in obj["spec"].get("traffic") or []]
    for name in filter(None, named):
        if not name.startswith(prefix):
            yield f"revision name {name!r} does not start with {prefix!r}"


def traffic_sums_to_100(obj: dict) -> Iterator[str]:
    """Traffic targets, when given, take 0-100% each and 100% together, with tags unique."""
    if not is_serving(obj, "Service", "Route"):
        return
    traffic = obj.get("spec", {}).get("traffic")
    if not traffic:
        return  # Knative defaults to 100% on the latest revision
    percents = [t.get("percent") or 0 for t in traffic]
    if sum(percents) != 100:
        yield f"traffic percents {percents} sum to {sum(percents)}, not 100"
    if any(not 0 <= p <= 100 for p in percents):
        yield f"traffic percents {percents} are not each within 0-100"
    tags = [t["tag"] for t in traffic if t.get("tag")]
    if len(tags) != len(set(tags)):
        yield f"traffic tags {tags} repeat"


RULES: dict[str, Callable[[dict], Iterator[str]]] = {
    rule.__name__: rule
    for rule in (
        autoscaling_annotations_on_the_template,
        string_values,
        autoscaling_bounds,
        one_container_port,
        no_reserved_env,
        revision_names_prefixed,
        traffic_sums_to_100,
    )
}


def violations(objects: list[dict]) -> list[str]:
    """Every rule over every object: '<kind>/<name>: <what is wrong>'."""
    return [
        f"{obj['kind']}/{obj['metadata']['name']}: {problem}"
        for obj in objects
        for rule in RULES.values()
        for problem in rule(obj)
    ]


def go_duration_s(text: str) -> float | None:
    """Seconds in a Go duration ("90s", "1m30s", "1h"), as Knative parses its window; None if it is not one."""
    if not text or _DURATION.sub("", text) != "":
        return None
    return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION.findall(text))


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None

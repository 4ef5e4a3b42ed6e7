"""Configuration, parsed once from an environment mapping (tests pass a dict instead of patching os.environ)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL_URI = "models:/fish-classification-mobilenetv2@onnx"
# Off a load balancer that needs time to notice a 503 (a plain Deployment) a drain is needed; under Knative the
# queue-proxy has drained before the container sees SIGTERM, so there it would only delay the exit.
DRAIN_S_STANDALONE = 5.0
# A request's framing around the image (multipart parts, a CloudEvent's JSON): body limits are MAX_UPLOAD_BYTES
# (or its base64) plus this, and the image itself is held to MAX_UPLOAD_BYTES when it is decoded.
BODY_SLACK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    model_uri: str = DEFAULT_MODEL_URI
    # A second model that sees the same images off the answer path, its answers logged beside the served ones
    # (function.inference.shadow): a candidate version judged on real traffic before anyone is served by it.
    shadow_model_uri: str | None = None
    shadow_sample: float = 1.0  # the share of predictions the shadow sees (0-1); skipped anyway under load
    tracking_uri: str | None = None
    # MLflow's own credential variables: a bearer token, or a user and password
    tracking_token: str | None = field(default=None, repr=False)
    tracking_username: str | None = None
    tracking_password: str | None = field(default=None, repr=False)
    database_url: str | None = None
    cache_dir: Path = Path("/tmp/fish-function/models")
    baked_dir: Path | None = None  # a read-only copy of registry versions inside the image (see model.source)
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000  # a 12 MP phone photo passes; a decompression bomb does not
    max_batch_files: int = 32  # images in one POST /predict/batch
    max_batch_bytes: int = 32 * 1024 * 1024  # one batch request's body: what it may hold in memory at once
    # Where an event's {"image_url": ...} may point: URL prefixes (scheme, host, port and a path ending in /).
    # None by default, so the function fetches nothing an event names until the operator says where from.
    image_url_allowed_prefixes: tuple[str, ...] = ()
    image_url_timeout_s: float = 10.0  # connect to last byte
    # Off: an API-only function (no page at / or /static/); also lets task bench measure what the UI costs
    web_ui: bool = True
    web_dir: Path | None = None  # the UI's files (the image's copy); None: the checkout's web/
    threads: int = 0  # onnxruntime's intra-op threads for a request that runs alone; 0: one a CPU
    # onnxruntime's intra-op threads busy-wait after each run for the next one: on (its default), a request alone
    # cost 10.3 ms of CPU against 2.7 ms off, the same p50, and the spin is charged to the pod's CPU quota
    # (docs/tuning.md). On only where the function has cores to itself and requests come back to back.
    ort_spinning: bool = False
    # Requests decoded and run at once; 0: one more than the CPUs, since a core would otherwise idle while a
    # worker waits for the GIL. (Why each default here is what it is, measured: docs/tuning.md.)
    workers: int = 0
    # Inference requests (POST /predict, /predict/batch, /, /v2/.../infer) in the app at once; more are answered
    # 503 + Retry-After, their bodies unread. 0: six a CPU: throughput peaks at four a CPU, and half as many again
    # keeps load at that knee from being refused.
    max_concurrent_requests: int = 0
    # A refused request's 503 goes out after this pause (no work meanwhile: a timer, the body left unread), the
    # second its Retry-After asks for, so that clients which ask again at once cannot make refusing the
    # instance's main work. 0: answer at once.
    shed_delay_s: float = 1.0
    # An admitted request's body: answered 408 when no byte came for this long (a phone on a slow link still
    # sends something every few seconds; 30 s of silence is a dead or hostile connection) ...
    body_idle_timeout_s: float = 30.0
    # ... and counted as slow once it has been arriving for this long (a phone's 3 MB at 1 Mbit/s takes 25 s; a
    # data centre sends 10 MB in under a second). At most half the slots may be slow at once.
    slow_upload_s: float = 5.0
    # A connection must send a request's headers within this long (from connecting, or from its last answer);
    # uvicorn alone waits for ever. Headers are a few hundred bytes: 2G sends them in well under a second.
    header_timeout_s: float = 20.0
    k_service: str | None = None
    k_revision: str | None = None
    k_configuration: str | None = None
    shutdown_grace_s: float = 30.0  # SIGTERM to SIGKILL: the pod's terminationGracePeriodSeconds
    shutdown_drain_s: float = 0.0

    def __post_init__(self) -> None:
        # frozen: the "0 means from the CPUs" defaults are resolved here, once, for every way of building one
        object.__setattr__(self, "threads", self.threads or available_cpus())
        object.__setattr__(self, "workers", self.workers or available_cpus() + 1)
        admitted = self.max_concurrent_requests or 6 * available_cpus()
        object.__setattr__(self, "max_concurrent_requests", admitted)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            host=env.get("HOST", cls.host),
            port=whole(env, "PORT", cls.port),
            model_uri=env.get("MODEL_URI", cls.model_uri),
            shadow_model_uri=env.get("SHADOW_MODEL_URI") or None,
            shadow_sample=fraction(env, "SHADOW_SAMPLE", cls.shadow_sample),
            tracking_uri=env.get("MLFLOW_TRACKING_URI"),
            tracking_token=env.get("MLFLOW_TRACKING_TOKEN"),
            tracking_username=env.get("MLFLOW_TRACKING_USERNAME"),
            tracking_password=env.get("MLFLOW_TRACKING_PASSWORD"),
            database_url=env.get("DATABASE_URL") or None,
            cache_dir=Path(env.get("MODEL_CACHE_DIR", cls.cache_dir)),
            baked_dir=Path(env["MODEL_BAKED_DIR"]) if env.get("MODEL_BAKED_DIR") else None,
            max_upload_bytes=whole(env, "MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_pixels=whole(env, "MAX_IMAGE_PIXELS", cls.max_pixels),
            max_batch_files=whole(env, "MAX_BATCH_FILES", cls.max_batch_files),
            max_batch_bytes=whole(env, "MAX_BATCH_BYTES", cls.max_batch_bytes),
            image_url_allowed_prefixes=tuple(
                prefix.strip()
                for prefix in env.get("IMAGE_URL_ALLOWED_PREFIXES", "").split(",")
                if prefix.strip()
            ),
            image_url_timeout_s=seconds(env, "IMAGE_URL_TIMEOUT_SECONDS", cls.image_url_timeout_s),
            web_ui=switch(env, "WEB_UI", cls.web_ui),
            web_dir=Path(env["WEB_DIR"]) if env.get("WEB_DIR") else None,
            threads=whole(env, "THREADS", cls.threads),
            ort_spinning=switch(env, "ORT_SPINNING", cls.ort_spinning),
            workers=whole(env, "WORKERS", cls.workers),
            max_concurrent_requests=whole(env, "MAX_CONCURRENT_REQUESTS", cls.max_concurrent_requests),
            shed_delay_s=seconds(env, "SHED_DELAY_SECONDS", cls.shed_delay_s),
            body_idle_timeout_s=seconds(env, "BODY_IDLE_TIMEOUT_SECONDS", cls.body_idle_timeout_s),
            slow_upload_s=seconds(env, "SLOW_UPLOAD_SECONDS", cls.slow_upload_s),
            header_timeout_s=seconds(env, "HEADER_TIMEOUT_SECONDS", cls.header_timeout_s),
            k_service=env.get("K_SERVICE"),
            k_revision=env.get("K_REVISION"),
            k_configuration=env.get("K_CONFIGURATION"),
            shutdown_grace_s=seconds(env, "SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_s),
            shutdown_drain_s=seconds(
                env, "SHUTDOWN_DRAIN_SECONDS", 0.0 if env.get("K_SERVICE") else DRAIN_S_STANDALONE
            ),
        )


class BadSetting(ValueError):
    """A variable whose value cannot be used; its message names the variable and what it takes."""


def whole(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number, 0 or more; unset or empty, the default."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdecimal():
        raise BadSetting(f"{name} must be a whole number, 0 or more, not {env[name]!r}")
    return int(value)


def seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A number of seconds, 0 or more (a fraction allowed); unset or empty, the default."""
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise BadSetting(f"{name} must be a number of seconds, 0 or more, not {env[name]!r}")
    return number


def fraction(env: Mapping[str, str], name: str, default: float) -> float:
    """A share, from 0 to 1; unset or empty, the default."""
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= 1:  # NaN fails too
        raise BadSetting(f"{name} must be a share from 0 to 1 (0.1 is one in ten), not {env[name]!r}")
    return number


SWITCH = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


def switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    """An on/off variable: on, true or 1; off, false or 0 (any case); unset or empty, the default."""
    value = env.get(name, "").strip().lower()
    if value and value not in SWITCH:
        raise BadSetting(f"{name} must be on or off (or true/false, 1/0), not {env[name]!r}")
    return SWITCH[value] if value else default


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this container may use: the cgroup quota if one is set, not the host's core count."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_quota(cgroup_root)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_quota(root: Path) -> float | None:
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None

"""The project's images as a cluster runs them: built by knative/images/build.sh, run by podman with what a Knative
pod gets (read-only root filesystem, /tmp a tmpfs, the numeric non-root user, the manifest's CPU and memory).

`python -m tests.images` measures the function image beside the team's TensorFlow plan (knative/images/
baseline.Dockerfile, the benchmark's baseline server) built the same way on the same base, in one run: image
size, container start to the first 200 from /predict, peak memory."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from convert.demo.mlflow_server import free_port

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "knative" / "images" / "build.sh"
TOOLS = ("buildah", "podman", "runc", "mmdebstrap")
USER = "10001:10001"
# podman's default open-files and process limits are above what this host allows (crun refuses its cgroups)
_NOFILE = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20)
RUNTIME = ["--runtime", "runc", "--network", "host", "--ulimit", f"nofile={_NOFILE}:{_NOFILE}",
           "--ulimit", "nproc=4096:4096"]  # fmt: skip
# --read-only-tmpfs=false: podman would otherwise also make /run and /var/tmp writable; a pod gets /tmp only
KNATIVE = ["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777", "--user", USER,
           "--cpus", "2", "--memory", "512m"]  # fmt: skip


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def build(image: str, tag: str, **env: str) -> str:
    """knative/images/build.sh IMAGE (layers cached: only what changed is rebuilt); returns the image's name."""
    done = subprocess.run(
        [str(BUILD), image], env={**os.environ, "TAG": tag, **env}, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"building {image} failed ({done.returncode}):\n{done.stderr[-6000:]}")
    return done.stdout.split()[-1]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done


@dataclass
class Container:
    name: str
    port: int

    @classmethod
    def create(
        cls,
        image: str,
        port: int,
        env: dict[str, str],
        *,
        limits: list[str] = KNATIVE,
        mounts: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
        command: tuple[str, ...] = (),
    ) -> Container:
        """A container of `image` listening on `port`; `mounts` are host paths bound read-only at targets."""
        name = f"fish-test-{uuid.uuid4().hex[:10]}"
        options_and_env = ["create", "--name", name, *RUNTIME, *limits, *options]
        for source, target in (mounts or {}).items():
            options_and_env += ["--volume", f"{source}:{target}:ro"]
        for key, value in {**env, "PORT": str(port)}.items():
            options_and_env += ["--env", f"{key}={value}"]
        podman(*options_and_env, image, *command)
        return cls(name, port)

    def start(self) -> float:
        """Start; returns time.monotonic() just before `podman start`."""
        started = time.monotonic()
        podman("start", self.name)
        return started

    def first_prediction(self, body: bytes, content_type: str, timeout_s: float = 120) -> float:
        """Start, then POST until the first 200: the seconds from `podman start` to that answer. The poller is
        http.client on a prebuilt body, so it takes next to no CPU from the container it is timing."""
        started = self.start()
        checked = started
        while time.monotonic() - started < timeout_s:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request("POST", "/predict", body, {"Content-Type": content_type})
                if connection.getresponse().status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            finally:
                connection.close()
            if time.monotonic() - checked > 1:
                checked = time.monotonic()
                if not self.state()["Running"]:
                    raise RuntimeError(f"{self.name} exited: {self.state()}\n{self.logs()[-3000:]}")
            time.sleep(0.002)
        raise RuntimeError(f"{self.name} never answered /predict:\n{self.logs()[-3000:]}")

    def state(self) -> dict:
        return json.loads(podman("inspect", "--format", "{{json .State}}", self.name).stdout)

    def peak_memory_mb(self) -> dict[str, float]:
        """While it runs: the cgroup's peak (what the memory limit and the OOM killer count, page cache of the
        files it read included) and the peak RSS of its main process."""
        pid = self.state()["Pid"]
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        (group,) = [line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory"]
        peak = int(Path(f"/sys/fs/cgroup/memory{group}/memory.max_usage_in_bytes").read_text())
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        (hwm,) = [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
        return {"cgroup peak MB": peak / 2**20, "peak RSS MB": hwm / 1024}

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command).stdout

    def stop(self, timeout_s: int = 30) -> int:
        """`podman stop`: SIGTERM, and SIGKILL after timeout_s (a pod's terminationGracePeriodSeconds)."""
        podman("stop", "--time", str(timeout_s), self.name)
        return self.state()["ExitCode"]

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def diff(self) -> set[str]:
        return set(podman("diff", self.name).stdout.split("\n")) - {""}

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def podman_own_changes(image: str) -> set[str]:
    """What `podman diff` shows for a container of `image` that did nothing: the files podman itself puts in
    (mount points for /etc/hosts, /etc/hostname, /etc/resolv.conf, and /etc/passwd and /etc/group entries for a
    user the image does not name)."""
    container = Container.create(image, 0, {}, options=("--entrypoint", "true"))
    try:
        podman("start", "--attach", container.name, check=False)
        return container.diff()
    finally:
        container.remove()


def image_size_mb(image: str) -> dict[str, float]:
    """Uncompressed (podman's own figure) and compressed: the saved image through gzip -6, about what a registry
    stores and a node pulls."""
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    saved = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"podman save {image} | gzip -6 | wc -c"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"uncompressed MB": size / 1e6, "compressed MB": int(saved.stdout) / 1e6}


# --- python -m tests.images: the measurement -------------------------------------------------------------------

ROUNDS = 5
LOAD = 24  # requests after the first answer, two at a time, three in four of them a 12 MP photo


def main() -> int:
    from convert.demo import fishes, mlflow_server
    from tests.bench.run import MODEL, make_photos, multipart, prepare_models

    work = Path(tempfile.mkdtemp(prefix="fish-images-"))
    server, port = mlflow_server.start_on_free_port(work / "mlflow")
    tracking = f"http://127.0.0.1:{port}"
    try:
        photos = {name: multipart(path) for name, path in make_photos(work).items()}
        keras_dir = prepare_models(tracking, work)  # MobileNetV2 α 1.0 224x224, as task bench serves it
        os.chmod(work, 0o755)  # the baseline reads the Keras model as the image's user
        builds, images = {}, {}
        for image, env in (
            ("function", {"BAKE_MODEL_URI": f"models:/{MODEL}@onnx", "BAKE_TRACKING_URI": tracking}),
            ("baseline", {}),
        ):
            started = time.monotonic()
            images[image] = build(image, "measure", **env)
            builds[image] = time.monotonic() - started
        baseline_env = {"KERAS_MODEL_URI": "/model", "CLASS_NAMES": ",".join(fishes.SPECIES)}
        contenders = {
            "function": lambda limits: Container.create(
                images["function"], free_port(), {"MLFLOW_TRACKING_URI": tracking, "K_SERVICE": "fish"},
                limits=limits,
            ),
            "baseline (TF)": lambda limits: Container.create(
                images["baseline"], free_port(), baseline_env, limits=limits, mounts={str(keras_dir): "/model"}
            ),
        }  # fmt: skip
        roomy = [*KNATIVE[:-1], "2g"]  # the same for both, so that neither is measured while being squeezed
        figures = {name: {} for name in contenders}
        for _ in range(ROUNDS):  # interleaved: this machine's speed drifts within minutes
            for name, create in contenders.items():
                for key, value in one_round(create(roomy), photos).items():
                    figures[name].setdefault(key, []).append(value)
        for name, image in (("function", images["function"]), ("baseline (TF)", images["baseline"])):
            figures[name].update({key: [value] for key, value in image_size_mb(image).items()})
        in_512m = {
            name: under_manifest_limits(create(KNATIVE), photos) for name, create in contenders.items()
        }
        report(figures, in_512m, builds, noop_start_s(images["function"]))
    finally:
        mlflow_server.stop(server)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def one_round(container: Container, photos: dict[str, tuple[bytes, str]]) -> dict[str, float]:
    """A fresh container, as a pod scaled from zero: start to the first 200, a little load, its memory."""
    try:
        first = container.first_prediction(*photos["640x480"])
        answered_at = time.time()
        figures = {
            "start to first 200 s": first,
            "process start to first 200 s": answered_at - _started_at(container),
        }
        answered = load(container.port, photos)
        assert answered == LOAD, f"{LOAD - answered} requests failed"
        return {**figures, **container.peak_memory_mb()}
    finally:
        container.remove()


def under_manifest_limits(container: Container, photos: dict[str, tuple[bytes, str]]) -> str:
    """--memory 512m, the limit the function is tested with: does the same round pass?"""
    try:
        first = container.first_prediction(*photos["640x480"])
        answered = load(container.port, photos)
        state = container.state()
        memory = container.peak_memory_mb() if state["Running"] else {}
        outcome = (
            f"cgroup peak {memory['cgroup peak MB']:.0f} MB"
            if memory
            else f"exited with {state['ExitCode']} (OOM-killed: {state['OOMKilled']}): {_last_line(container)}"
        )
        return f"first 200 after {first:.2f} s, {answered}/{LOAD} requests answered, {outcome}"
    except RuntimeError as exc:
        return f"no answer: {str(exc).splitlines()[0]}, OOM-killed: {container.state()['OOMKilled']}"
    finally:
        container.remove()


def _last_line(container: Container) -> str:
    lines = container.logs().strip().splitlines()
    return lines[-1][:200] if lines else "no log"


def load(port: int, photos: dict[str, tuple[bytes, str]]) -> int:
    """LOAD requests, two at a time; the 12 MP photos are the memory high-water mark. Returns the 200s."""
    bodies = [photos["640x480"] if i % 4 == 0 else photos["12MP"] for i in range(LOAD)]
    with ThreadPoolExecutor(2) as pool:
        return sum(pool.map(lambda body: _post(port, *body), bodies))


def _post(port: int, body: bytes, content_type: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/predict", body, {"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _started_at(container: Container) -> float:
    """When the container's process started (podman's StartedAt, nanoseconds cut to microseconds)."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", container.state()["StartedAt"])
    return datetime.datetime.fromisoformat(stamp).timestamp()


def noop_start_s(image: str) -> float:
    """What podman itself takes: `podman start --attach` of a container that runs `true` (median of 5)."""
    times = []
    for _ in range(5):
        container = Container.create(image, 0, {}, options=("--entrypoint", "true"))
        try:
            started = time.monotonic()
            podman("start", "--attach", container.name)
            times.append(time.monotonic() - started)
        finally:
            container.remove()
    return statistics.median(times)


def report(figures: dict, in_512m: dict[str, str], builds: dict[str, float], noop_s: float) -> None:
    keys = ["uncompressed MB", "compressed MB", "start to first 200 s", "process start to first 200 s",
            "cgroup peak MB", "peak RSS MB"]  # fmt: skip
    print(
        f"\nMobileNetV2 α 1.0 224x224, --cpus 2 --memory 2g; medians of {ROUNDS} fresh containers, interleaved"
    )
    for name, values in figures.items():
        print(f"  {name}")
        for key in keys:
            samples = " ".join(f"{v:.2f}" for v in values[key]) if len(values[key]) > 1 else ""
            print(f"    {key:32} {statistics.median(values[key]):10.2f}   {samples}")
    function, baseline = figures["function"], figures["baseline (TF)"]
    print("  baseline / function (medians)")
    for key in keys:
        print(f"    {key:32} {statistics.median(baseline[key]) / statistics.median(function[key]):10.1f}")
    for name, outcome in in_512m.items():
        print(f"  {name} under --memory 512m: {outcome}")
    print(f"  podman start --attach of a container that runs `true`: {noop_s:.2f} s")
    print("  builds (layers cached, the bake step always runs): "
          + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in builds.items()))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())

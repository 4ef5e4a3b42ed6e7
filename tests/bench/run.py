"""task bench: the function (fp32 and int8, prediction log on) against the team's TensorFlow plan and against
the compute limit, side by side in one run, on the same images and the same load tool (wrk).

Figures: cold start (process start to the first successful /predict, model in the local cache), p50/p99 at
concurrency 1 for a 640x480 and a 12 MP JPEG, throughput at concurrency 8, peak RSS, and the process's CPU per
640x480 request sent one at a time with 5 ms gaps (the compute limit's: decode and one onnxruntime run on one
thread with the same gaps, "the work alone"). For function fp32, the other
doors on the same 640x480 JPEG in the same rounds: a CloudEvent in binary mode and an Open Inference Protocol BYTES
infer at concurrency 8, and /predict/batch with 8 files at concurrency 1 and 2. A batch is compared by images in
flight: 8 files at c=1 against /predict at c=8.

With BENCH_BEFORE=<git ref> (a commit with today's layout, 016fdd0 or later), "function fp32, before" is the function
as that commit has it, in its own venv, in the same interleaved rounds: an issue's before and after in one run, with
ratios after / before.

"KServe predictor" is KServe's Python model server on the same ONNX file (tests/bench/kserve_server.py, in its
own venv): started in the same interleaved cold start rounds, for that figure alone.

"function fp32, no UI" is function fp32 with WEB_UI=off (no page routes), started and loaded in the same
interleaved rounds: its ratios to function fp32 are what serving the web UI costs cold start and /predict.

After the rounds, function fp32 is overloaded (tests/bench/overload.py): wrk c=256 for 60 s (BENCH_OVERLOAD_SECONDS
for a shorter trial) with each photo, against its c=8 peak on the same photo: answered rate, 503s with
Retry-After, other statuses, socket errors and timeouts, admitted requests' latency and peak RSS."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from convert import cli
from convert.demo import fishes, mlflow_server
from function.inference import images
from function.model.classifier import Classifier
from function.model.registry import Registry
from function.model.source import fetch
from function.settings import Settings, available_cpus
from tests.bench import overload
from tests.models import register_keras
from tests.postgres import Postgres

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MODEL = "bench-mobilenetv2"
KSERVE_ROW = "KServe predictor"
console = Console(stderr=True)


ROUNDS = 3  # figures are medians over interleaved rounds: this machine's speed drifts by 10-20% in a minute
# CPU per request: this many /predict calls one at a time, this long apart (a pod's usual load: one user, gaps).
CPU_REQUESTS, GAP_S = 200, 0.005
KSERVE = "0.21.0"  # KServe's Python model server, for cold start side by side
SHADOW_SHARES = (0.1, 1.0)  # SHADOW_SAMPLE of the shadowed rows


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="fish-bench-"))
    port = mlflow_server.free_port()
    tracking = f"http://127.0.0.1:{port}"
    server = mlflow_server.start(work / "mlflow", port)
    postgres = Postgres(work / "pg")
    running: dict[str, Server] = {}
    try:
        photos = make_photos(work)
        keras_dir = prepare_models(tracking, work)
        python = function_environment(work, ROOT, "function-venv", work / "web")
        commands = {
            "function fp32": function_command(python, tracking, work, postgres.url, "onnx"),
            **before_commands(work, tracking, postgres.url),
            "function fp32, no UI": function_command(
                python, tracking, work, postgres.url, "onnx", WEB_UI="off"
            ),
            # The shadow's costs (issue 20): the same fp32 version as its own shadow, for 10% and all of the images
            **{
                f"function fp32, shadow {share:.0%}": function_command(
                    python,
                    tracking,
                    work,
                    postgres.url,
                    "onnx",
                    SHADOW_MODEL_URI=f"models:/{MODEL}@onnx",
                    SHADOW_SAMPLE=str(share),
                )
                for share in SHADOW_SHARES
            },  # fmt: skip
            "function int8": function_command(python, tracking, work, postgres.url, "onnx-int8"),
            "baseline (TF)": baseline_command(keras_dir),
        }
        samples: dict[str, dict[str, list[float]]] = {name: {"cold start s": []} for name in commands}
        for name, command in commands.items():
            with console.status(f"First start (fills the model cache): {name}…"):
                running[name] = Server.start(command, photos["640x480"])
        onnx_file = fetch(f"models:/{MODEL}@onnx", Registry(tracking), work / "cache").path
        starting = {**commands, KSERVE_ROW: kserve_command(work, onnx_file)}  # cold start only
        samples[KSERVE_ROW] = {"cold start s": []}
        for round_ in range(ROUNDS):  # process start to first answer, model cached, the others idle
            # each round starts them in another order: the first start of a round came out 1.14-1.23x slower
            # than the same code started later (2026-12-05)
            names = list(starting)
            offset = round_ * len(names) // ROUNDS
            for name in names[offset:] + names[:offset]:
                command = starting[name]
                with console.status(f"Cold start {round_ + 1}/{ROUNDS}: {name}…"):
                    if name in running:
                        running[name].stop()
                    started = Server.start(command, photos["640x480"])
                    samples[name]["cold start s"].append(started.cold_start)
                    if name in commands:
                        running[name] = started
                    else:
                        started.stop()
        limits = {
            f"compute limit {precision}": ComputeLimit(
                fetch(f"models:/{MODEL}@{alias}", Registry(tracking), work / "cache").path
            )
            for precision, alias in (("fp32", "onnx"), ("int8", "onnx-int8"))
        }
        doors = Doors(running["function fp32"], photos["640x480"])
        for round_ in range(ROUNDS):
            for name, running_server in running.items():
                with console.status(f"Round {round_ + 1}/{ROUNDS}: {name}…"):
                    add(samples[name], running_server.load(photos))
            with console.status(f"Round {round_ + 1}/{ROUNDS}: function fp32, other doors…"):
                doors.measure()
            for name, limit in limits.items():
                with console.status(f"Round {round_ + 1}/{ROUNDS}: {name}…"):
                    add(samples.setdefault(name, {}), limit.measure(photos))
        for name, running_server in running.items():
            samples[name]["peak RSS MB"] = [running_server.peak_rss_mb()]
        fp32 = running["function fp32"]
        what = f"c={overload.CONNECTIONS}, {overload.SECONDS} s a photo"
        with console.status(f"Overload: function fp32, {what}…"):
            overloaded = overload.measure(fp32.port, fp32.process.pid, photos, multipart)
        shadowed = running[f"function fp32, shadow {SHADOW_SHARES[-1]:.0%}"]
        shadow_counts = {"load rounds": shadow_metrics(shadowed.port)}
        with console.status(
            f"Overload: function fp32 with its shadow on every image, c={overload.CONNECTIONS}…"
        ):
            overload.measure(shadowed.port, shadowed.process.pid, {"640x480": photos["640x480"]}, multipart)
        after = shadow_metrics(shadowed.port)
        shadow_counts["overload"] = {k: v - shadow_counts["load rounds"].get(k, 0) for k, v in after.items()}
        print_table({name: summarize(figures) for name, figures in samples.items()}, doors)
        overload.print_overload(overloaded, Console(width=160))
        print_shadow({name: summarize(figures) for name, figures in samples.items()}, shadow_counts)
    finally:
        for running_server in running.values():
            running_server.stop()
        mlflow_server.stop(server)
        postgres.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def summarize(samples: dict[str, list[float]]) -> dict[str, float]:
    return {key: sum(v) if key == "errors" else statistics.median(v) for key, v in samples.items()}


def add(samples: dict[str, list[float]], figures: dict[str, float]) -> None:
    for key, value in figures.items():
        samples.setdefault(key, []).append(value)


def make_photos(work: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    photo = fishes.render(8, rng, size=640).crop((0, 80, 640, 560))  # 640x480
    paths = {"640x480": work / "640x480.jpg", "12MP": work / "12mp.jpg"}
    photo.save(paths["640x480"], quality=90)
    photo.resize((4000, 3000)).save(paths["12MP"], quality=90)
    return paths


def prepare_models(tracking: str, work: Path) -> Path:
    """MobileNetV2 α 1.0 224x224 registered as the DAG does, converted by our converter (fp32 and int8)."""
    import keras
    import mlflow

    with console.status("Registering and converting MobileNetV2 α 1.0 (224x224)…"):
        model = keras.applications.MobileNetV2(weights=None, alpha=1.0, input_shape=(224, 224, 3), classes=9)
        x, _ = fishes.make_dataset(4, seed=1, size=224)
        register_keras(tracking, MODEL, model, list(fishes.SPECIES), samples=x)
        # Untrained weights: the int8 gate judges accuracy, which this speed benchmark does not need.
        args = [
            "--tracking-uri",
            tracking,
            "--model",
            MODEL,
            "--quantize",
            "int8",
            "--min-int8-agreement",
            "0",
        ]
        assert cli.main(args) == 0
        mlflow.set_tracking_uri(tracking)
        keras_dir = Path(
            mlflow.artifacts.download_artifacts(f"models:/{MODEL}/1", dst_path=str(work / "keras"))
        )
    return keras_dir


def function_environment(work: Path, source: Path, venv_name: str, web: Path) -> Path:
    """The function as its image installs it: the `function` extra alone, not editable, in its own venv. The
    dev venv would flatter nothing and cost a start ~90 ms (Litestar loads a pydantic plugin when pydantic,
    there for MLflow, is importable)."""
    venv = work / venv_name
    with console.status(f"Installing the function extra from {source} into its own venv…"):
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{source}[function]"],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run([str(venv / "bin" / "python"), "-m", "function.http.collect_web", str(source / "web"), str(web)],
                       check=True, capture_output=True, cwd=work)  # fmt: skip
    return venv / "bin" / "python"


def before_commands(work: Path, tracking: str, database_url: str) -> dict:
    """ "function fp32, before": BENCH_BEFORE's function, with this checkout's npm packages."""
    ref = os.environ.get("BENCH_BEFORE")
    if not ref:
        return {}
    source = work / "before"
    source.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    (source / "web" / "node_modules").symlink_to(ROOT / "web" / "node_modules")
    python = function_environment(work, source, "before-venv", work / "before-web")
    command = function_command(python, tracking, work, database_url, "onnx", WEB_DIR=str(work / "before-web"))
    return {"function fp32, before": command}


def function_command(python: Path, tracking: str, work: Path, database_url: str, alias: str, **more: str):
    env = {"MODEL_URI": f"models:/{MODEL}@{alias}", "MLFLOW_TRACKING_URI": tracking,
           "MODEL_CACHE_DIR": str(work / "cache"), "DATABASE_URL": database_url,
           "SHUTDOWN_DRAIN_SECONDS": "0", "WEB_DIR": str(work / "web"),  # collected by collect_web, as for the before one
           **more}  # fmt: skip  # nothing routes to it after the run
    return [str(python), "-m", "function"], env, work  # run outside the checkout: the installed package


def kserve_command(work: Path, model: Path):
    """KServe's predictor (tests/bench/kserve_server.py) on the same ONNX file, in a venv of its own: kserve as
    PyPI has it, onnxruntime as the function pins it."""
    venv = work / "kserve-venv"
    with console.status(f"Installing kserve {KSERVE} into its own venv…"):
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"kserve=={KSERVE}",
                        "onnxruntime==1.32.0", "pillow"], check=True, capture_output=True)  # fmt: skip
    env = {"MODEL_PATH": str(model)}
    return [str(venv / "bin" / "python"), str(HERE / "kserve_server.py")], env, work, kserve_request


def kserve_request(photo: Path) -> tuple[str, bytes, str]:
    instances = {"instances": [{"b64": base64.b64encode(photo.read_bytes()).decode()}]}
    return "/v1/models/fish:predict", json.dumps(instances).encode(), "application/json"


def baseline_command(keras_dir: Path):
    env = {
        "KERAS_MODEL_URI": str(keras_dir),
        "CLASS_NAMES": ",".join(fishes.SPECIES),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return [sys.executable, "-m", "tests.bench.baseline_server"], env, ROOT


class Server:
    def __init__(self, process: subprocess.Popen, port: int, cold_start: float):
        self.process, self.port, self.cold_start = process, port, cold_start

    @classmethod
    def start(cls, command, photo: Path) -> Server:
        """Start, then POST the photo until the first 200: that is the cold start. The poller is http.client
        on a prebuilt body, so it takes next to no CPU from the process it is timing. A command may name its own
        request (path, body, content type; KServe's), else the photo goes to /predict as an upload."""
        argv, env, cwd, *request = command
        port = mlflow_server.free_port()
        path, body, content_type = request[0](photo) if request else ("/predict", *multipart(photo))
        started = time.monotonic()
        process = subprocess.Popen(argv, env={**os.environ, **env, "PORT": str(port)}, cwd=cwd, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{argv} exited with {process.returncode}")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("POST", path, body, {"Content-Type": content_type})
                if connection.getresponse().status == 200:
                    return cls(process, port, time.monotonic() - started)
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(0.002)

    def load(self, photos: dict[str, Path]) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.port}"
        figures = {}
        for name, photo in photos.items():
            _, _, p50, p99, errors = wrk(url, photo, connections=1, seconds=4)
            figures[f"p50 {name} ms"], figures[f"p99 {name} ms"] = p50, p99
        requests, seconds, _, _, errors = wrk(url, photos["640x480"], connections=8, seconds=6)
        figures["req/s c=8"] = requests / seconds
        figures["errors"] = errors
        figures["CPU ms/req c=1"] = self.cpu_per_request(photos["640x480"])
        return figures

    def cpu_per_request(self, photo: Path) -> float:
        """The process's CPU (every thread, user and system) per /predict, sent one at a time with GAP_S
        between them, as a pod with one user at a time sees them."""
        body, content_type = multipart(photo)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            before = process_cpu_s(self.process.pid)
            for _ in range(CPU_REQUESTS):
                connection.request("POST", "/predict", body, {"Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"/predict answered {response.status} while measuring CPU")
                time.sleep(GAP_S)
            time.sleep(GAP_S)  # what a request leaves running after its answer (a spinning pool) counts too
            return (process_cpu_s(self.process.pid) - before) / CPU_REQUESTS * 1000
        finally:
            connection.close()

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of every thread of `pid` so far (/proc/PID/stat utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def multipart(photo: Path) -> tuple[bytes, str]:
    boundary = "benchboundary7MA4YWxkTrZu0gW"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="fish.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n")  # fmt: skip
    body = head.encode() + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def wrk(url: str, photo: Path, connections: int, seconds: int, script: str = "post.lua", **env: str):
    """(requests, seconds, p50 ms, p99 ms, errors); a non-2xx answer counts as an error."""
    done = subprocess.run(
        ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "-s", str(HERE / script), url],
        env={**os.environ, "BENCH_IMAGE": str(photo), **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH "))
    requests, duration_us, p50, p99, errors = line.split()[1:]
    return int(requests), int(duration_us) / 1e6, float(p50), float(p99), int(errors)


class Doors:
    """function fp32's other doors, each loaded as /predict is (wrk, 640x480 JPEG). A door that does not answer
    its probe request as it should (not built yet, say) is reported as such instead of measured.

    Each round loads /predict at c=8 again just before the doors, and the doors' ratios are to that: this
    machine's speed drifts by 10-20% in a minute, and the /predict figure of the main table was taken minutes
    earlier in the round."""

    BATCH_FILES = 8
    BESIDE = "/predict c=8, just before the doors"
    LOADS = {  # row: (wrk script, connections, images per request)
        BESIDE: ("post.lua", 8, 1),
        "CloudEvent binary c=8": ("cloudevent.lua", 8, 1),
        f"batch of {BATCH_FILES} c=1": ("batch.lua", 1, BATCH_FILES),
        f"batch of {BATCH_FILES} c=2": ("batch.lua", 2, BATCH_FILES),
        "OIP BYTES c=8": ("oip_bytes.lua", 8, 1),
    }
    SCRIPTS = {
        "cloudevent.lua": "/",
        "batch.lua": "/predict/batch",
        "oip_bytes.lua": f"/v2/models/{MODEL}/infer",
    }

    def __init__(self, server: Server, photo: Path):
        self.url, self.photo = f"http://127.0.0.1:{server.port}", photo
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.broken = {script: why for script in self.SCRIPTS if (why := self._probe(server.port, script))}

    def measure(self) -> None:
        for row, (script, connections, images_per_request) in self.LOADS.items():
            if script in self.broken:
                continue
            requests, seconds, p50, p99, errors = wrk(
                self.url, self.photo, connections, seconds=6, script=script, BENCH_RUN=uuid.uuid4().hex,
                BENCH_FILES=str(self.BATCH_FILES), BENCH_MODEL=MODEL,
            )  # fmt: skip
            figures = {"req/s": requests / seconds, "images/s": requests * images_per_request / seconds,
                       "p50 ms": p50, "p99 ms": p99, "errors": errors}  # fmt: skip
            add(self.samples.setdefault(row, {}), figures)

    def _probe(self, port: int, script: str) -> str | None:
        """None if the door answers one request as wrk will send it; else what it answered."""
        body, headers = _door_request(script, self.photo.read_bytes(), self.BATCH_FILES)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("POST", self.SCRIPTS[script], body, headers)
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        if response.status != 200:
            return f"HTTP {response.status}: {answer[:120]!r}"
        if script == "cloudevent.lua" and response.getheader("ce-type") is None:
            return "answered 200 without a CloudEvent in binary mode (no ce-type header)"
        return None


def _door_request(script: str, image: bytes, files: int) -> tuple[bytes, dict[str, str]]:
    """The request a wrk script sends (the probe's copy, so a door is checked with the bytes wrk sends)."""
    if script == "cloudevent.lua":
        headers = {"ce-specversion": "1.0", "ce-type": "com.example.fish.image.submitted", "ce-source": "/bench",
                   "ce-id": f"probe-{uuid.uuid4().hex}", "Content-Type": "image/jpeg"}  # fmt: skip
        return image, headers
    if script == "oip_bytes.lua":
        inputs = [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": 4 + len(image)},
            }
        ]
        outputs = [{"name": "probabilities", "parameters": {"binary_data": True}}]
        header = json.dumps({"inputs": inputs, "outputs": outputs}).encode()
        body = header + len(image).to_bytes(4, "little") + image
        return body, {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        }
    boundary = "benchboundary7MA4YWxkTrZu0gW"
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="fish.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + b"\r\n"  # fmt: skip
    return part * files + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"
    }


class ComputeLimit:
    """Decode + resize + onnxruntime in this process, no HTTP: the function's own Classifier, with the thread
    and worker counts the server uses (`Settings` defaults), alone for one image, shared under load."""

    def __init__(self, path: Path):
        self.settings = Settings.from_env({})
        self.classifier = Classifier(path, self.settings.threads)
        self.size = self.classifier.card.input_size

    def _one(self, data: bytes, alone: bool) -> None:
        self.classifier.classify(images.decode(data, self.size, self.settings.max_pixels), alone)

    def measure(self, photos: dict[str, Path]) -> dict[str, float]:
        figures = {}
        for name, photo in photos.items():
            data, times = photo.read_bytes(), []
            for _ in range(60 if name == "640x480" else 15):
                started = time.perf_counter()
                self._one(data, alone=True)
                times.append(time.perf_counter() - started)
            figures[f"p50 {name} ms"] = statistics.median(times) * 1000
            figures[f"p99 {name} ms"] = float(np.percentile(times, 99)) * 1000
        data = photos["640x480"].read_bytes()
        started = time.process_time()
        for _ in range(
            CPU_REQUESTS
        ):  # "the work alone": decode and one run, one thread busy, with the same gaps
            self._one(data, alone=False)
            time.sleep(GAP_S)
        figures["CPU ms/req c=1"] = (time.process_time() - started) / CPU_REQUESTS * 1000
        count, started = 600, time.perf_counter()
        with ThreadPoolExecutor(self.settings.workers) as pool:
            list(pool.map(lambda _: self._one(data, alone=False), range(count)))
        figures["req/s c=8"] = count / (time.perf_counter() - started)
        return figures


def print_table(results: dict[str, dict], doors: Doors) -> None:
    columns = ["cold start s", "p50 640x480 ms", "p99 640x480 ms", "p50 12MP ms", "p99 12MP ms", "req/s c=8",
               "CPU ms/req c=1", "peak RSS MB", "errors"]  # fmt: skip
    settings = Settings.from_env({})
    table = Table(
        title=f"task bench: MobileNetV2 α 1.0 224x224, {os.cpu_count()} CPUs, {available_cpus()} usable, "
        f"{settings.threads} threads alone, {settings.workers} workers; medians of {ROUNDS} rounds"
    )
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    for name, figures in results.items():
        table.add_row(name, *[_cell(figures.get(c)) for c in columns])
    base, fp32, int8, limit, limit8, no_ui = (
        results[k]
        for k in (
            "baseline (TF)",
            "function fp32",
            "function int8",
            "compute limit fp32",
            "compute limit int8",
            "function fp32, no UI",
        )
    )
    ratios = {
        "cold start, baseline / function (target >= 15)": base["cold start s"] / fp32["cold start s"],
        "cold start, function / KServe predictor (target <= 0.6)": fp32["cold start s"]
        / results[KSERVE_ROW]["cold start s"],
        "req/s c=8, function / baseline (target >= 15)": fp32["req/s c=8"] / base["req/s c=8"],
        "req/s c=8, function int8 / baseline": int8["req/s c=8"] / base["req/s c=8"],
        "req/s c=8, compute limit fp32 / baseline (the most fp32 can reach)": limit["req/s c=8"]
        / base["req/s c=8"],
        "req/s c=8, function / compute limit (target >= 0.9)": fp32["req/s c=8"] / limit["req/s c=8"],
        "p50 640x480, function / compute limit (target <= 1.3)": fp32["p50 640x480 ms"]
        / limit["p50 640x480 ms"],
        "CPU a request at c=1 with gaps, function / the work alone (target <= 2)": fp32["CPU ms/req c=1"]
        / limit["CPU ms/req c=1"],
        "p50 12MP, baseline / function (target >= 5)": base["p50 12MP ms"] / fp32["p50 12MP ms"],
        "peak RSS, baseline / function (target >= 5)": base["peak RSS MB"] / fp32["peak RSS MB"],
        "req/s c=8, int8 / fp32 (target >= 1.4)": int8["req/s c=8"] / fp32["req/s c=8"],
        "req/s c=8, function int8 / compute limit int8": int8["req/s c=8"] / limit8["req/s c=8"],
        "p50 640x480, function int8 / compute limit int8": int8["p50 640x480 ms"] / limit8["p50 640x480 ms"],
        "cold start, function / function without UI (UI cost; ~1.0 = none)": fp32["cold start s"]
        / no_ui["cold start s"],
        "req/s c=8, function / function without UI": fp32["req/s c=8"] / no_ui["req/s c=8"],
        "p50 640x480, function / function without UI": fp32["p50 640x480 ms"] / no_ui["p50 640x480 ms"],
    }
    if before := results.get("function fp32, before"):
        ratios |= {
            "cold start, function / before": fp32["cold start s"] / before["cold start s"],
            "p50 640x480, function / before": fp32["p50 640x480 ms"] / before["p50 640x480 ms"],
            "p50 12MP, function / before": fp32["p50 12MP ms"] / before["p50 12MP ms"],
            "req/s c=8, function / before": fp32["req/s c=8"] / before["req/s c=8"],
            "peak RSS, function / before": fp32["peak RSS MB"] / before["peak RSS MB"],
            "CPU a request at c=1, function / before": fp32["CPU ms/req c=1"] / before["CPU ms/req c=1"],
        }
    out = Console(width=160)
    out.print(table)
    for name, value in ratios.items():
        out.print(f"  {name}: {value:.2f}")
    print_doors(fp32, doors, out)


def shadow_metrics(port: int) -> dict[str, float]:
    """The shadow's counters from /metrics: classified, and skipped by reason."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    counts = {}
    for line in text.splitlines():
        if line.startswith("shadow_predictions_total "):
            counts["classified"] = float(line.split()[-1])
        elif line.startswith("shadow_skipped_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[f"skipped: {reason}"] = float(line.split()[-1])
    return counts


def print_shadow(results: dict[str, dict], counts: dict[str, dict[str, float]]) -> None:
    """What a shadow model costs the served answers (issue 20): shadow off, on 10% and on every image."""
    out = Console(width=160)
    off = results["function fp32"]
    for share in SHADOW_SHARES:
        on = results[f"function fp32, shadow {share:.0%}"]
        out.print(f"  shadow on {share:.0%}: req/s c=8 {on['req/s c=8']:.1f} against {off['req/s c=8']:.1f} off "
                  f"({on['req/s c=8'] / off['req/s c=8']:.2f}), p50 640x480 c=1 {on['p50 640x480 ms']:.1f} against "
                  f"{off['p50 640x480 ms']:.1f} ms ({on['p50 640x480 ms'] / off['p50 640x480 ms']:.2f}; target <= 1.1 "
                  f"at 100%), peak RSS {on['peak RSS MB']:.0f} against {off['peak RSS MB']:.0f} MB, CPU a request "
                  f"{on['CPU ms/req c=1']:.1f} against {off['CPU ms/req c=1']:.1f} ms")  # fmt: skip
    for phase, figures in counts.items():
        shown = ", ".join(f"{name} {value:.0f}" for name, value in sorted(figures.items()))
        out.print(f"  shadow on every image, {phase}: {shown}")


def print_doors(fp32: dict, doors: Doors, out: Console) -> None:
    table = Table(title=f"function fp32, other doors: 640x480 JPEG, medians of {ROUNDS} rounds")
    columns = ["req/s", "images/s", "p50 ms", "p99 ms", "errors"]
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    predict = _cell(fp32["req/s c=8"])
    table.add_row("/predict c=8, main table", predict, predict, "", "", _cell(fp32["errors"]))
    results = {row: summarize(figures) for row, figures in doors.samples.items()}
    for row, figures in results.items():
        table.add_row(row, *[_cell(figures.get(c)) for c in columns])
    out.print(table)
    for script, why in doors.broken.items():
        out.print(f"  not measured, {Doors.SCRIPTS[script]} did not answer the probe: {why}")
    batch = f"batch of {Doors.BATCH_FILES}"
    ratios = {
        "req/s c=8, CloudEvents binary / /predict (target >= 0.9)": ("CloudEvent binary c=8", "req/s"),
        f"images/s, batch / /predict ({batch} at c=1 against /predict at c=8: 8 images in flight each)": (
            f"{batch} c=1",
            "images/s",
        ),
        f"images/s, {batch} at c=2 (16 in flight) / /predict at c=8": (f"{batch} c=2", "images/s"),
        "req/s c=8, OIP BYTES / /predict": ("OIP BYTES c=8", "req/s"),
    }
    beside = results.get(Doors.BESIDE, {}).get("req/s") or fp32["req/s c=8"]
    for name, (row, column) in ratios.items():
        if row not in results:
            out.print(f"  {name}: not measured")
        elif results[row]["errors"]:
            out.print(f"  {name}: {results[row]['errors']:.0f} errors, no ratio")
        else:
            out.print(f"  {name}: {results[row][column] / beside:.2f}")


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if isinstance(value, int) or value >= 100 else f"{value:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())

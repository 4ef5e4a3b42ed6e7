"""task soak: the function under steady load for SOAK_MINUTES (default 10; `task soak -- 2` overrides) at
concurrency 8, the prediction log on (a real PostgreSQL), a fixed mix of good and bad uploads (tests/soak/load.py).

The model is task bench's: MobileNetV2 α 1.0 224x224, registered in a local MLflow server and converted by our
converter (fp32), served by the function installed alone in its own venv, as its image has it.

Every 5 s the function's /proc entry is read (VmRSS, VmHWM, open fds, threads); the load records every answer.
Pass criteria (exit code 1 if one fails): no answer other than the expected one for its kind (200, or the 4xx the
bad uploads call for; a 5xx, socket error or timeout is an error), rows logged = 200 answers once the writer's
queue is drained, RSS growth after warm-up under 10%, open fds and threads flat. Figures go to
tests/soak/last-run.json, the plot to docs/soak.png."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from rich.console import Console

from convert.demo import mlflow_server
from function.settings import Settings
from tests.bench.overload import metrics_text
from tests.bench.run import Server, function_command, function_environment, make_photos, prepare_models
from tests.postgres import Postgres
from tests.soak import figures, plot
from tests.soak.load import Load, mix

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
CONNECTIONS = 8
SAMPLE_EVERY_S = 5.0
console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("minutes", nargs="?", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    parser.add_argument("--json", type=Path, default=HERE / "last-run.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.png")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fish-soak-"))
    port = mlflow_server.free_port()
    tracking = f"http://127.0.0.1:{port}"
    mlflow = mlflow_server.start(work / "mlflow", port)
    postgres = Postgres(work / "pg")
    server = None
    try:
        photos = make_photos(work)
        prepare_models(tracking, work)
        python = function_environment(work, ROOT, "function-venv", work / "web")
        with console.status("Starting the function (model cache, then the first 200)…"):
            server = Server.start(
                function_command(python, tracking, work, postgres.url, "onnx"), photos["640x480"]
            )
        result = soak(
            server,
            postgres.url,
            mix(photos, Settings.from_env(os.environ).max_upload_bytes),
            args.minutes * 60,
        )
    finally:
        if server is not None:
            server.stop()
        mlflow_server.stop(mlflow)
        postgres.close()
        shutil.rmtree(work, ignore_errors=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    plot.draw(result, args.plot)
    figures.print_summary(result, Console(width=140))
    console.print(f"figures: {args.json}; plot: {args.plot}")
    return 0 if all(check["pass"] for check in result["criteria"].values()) else 1


def soak(server: Server, database_url: str, uploads, seconds: float) -> dict:
    probe = Load(server.port, uploads, client_id=f"soakprobe-{uuid.uuid4().hex[:12]}")
    kinds = {u.kind: u for u in uploads}
    for upload in kinds.values():  # each kind once: a wrong answer fails now, not ten minutes later
        if (status := probe.once(upload)) != upload.expected:
            raise SystemExit(f"soak: {upload.kind} answered {status}, expected {upload.expected}")
    client_id = f"soak-{uuid.uuid4().hex[:16]}"
    load = Load(server.port, uploads, client_id)
    sampler = Sampler(server.process.pid)
    with console.status(f"Soaking for {seconds / 60:g} min at concurrency {CONNECTIONS}…"):
        sampler.start()
        answers = load.run(seconds, CONNECTIONS)
        sampler.stop()
    with console.status("Waiting for the prediction log's queue to drain…"):
        rows, log_metrics = drained_rows(server.port, database_url, client_id)
    return figures.evaluate(
        answers, sampler.samples, rows, log_metrics,
        {"seconds": seconds, "connections": CONNECTIONS, "load_cpu_seconds": load.cpu_seconds,
         "kinds": {kind: u.expected for kind, u in kinds.items()}, "cycle": [u.kind for u in uploads],
         "model": "MobileNetV2 α 1.0 224x224 fp32 (task bench's)", "cpus": os.cpu_count()},
    )  # fmt: skip


class Sampler:
    """The function's /proc/<pid> every SAMPLE_EVERY_S: RSS and peak RSS (MB), open fds, threads, CPU %."""

    def __init__(self, pid: int):
        self.pid, self.samples = pid, []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def start(self) -> None:
        """Call before the load starts: the first sample is the idle process."""
        self._began = time.perf_counter()
        self._take(load=False)
        self._thread.start()

    def stop(self) -> None:
        """Call after the load has ended (its connections closed): the last sample is the idle process again."""
        self._stopped.set()
        self._thread.join()
        self._take(load=False)

    def _run(self) -> None:
        while not self._stopped.wait(SAMPLE_EVERY_S):
            self._take(load=True)

    def _take(self, load: bool) -> None:
        proc = Path(f"/proc/{self.pid}")
        status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines())
        ticks = sum(int(x) for x in (proc / "stat").read_text().rsplit(")", 1)[1].split()[11:13])
        self.samples.append({
            "t": round(time.perf_counter() - self._began, 2),
            "load": load,
            "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "hwm_mb": int(status["VmHWM"].split()[0]) / 1024,
            "fds": len(os.listdir(proc / "fd")),
            "threads": int(status["Threads"]),
            "cpu_s": ticks / os.sysconf("SC_CLK_TCK"),
        })  # fmt: skip


def drained_rows(port: int, database_url: str, client_id: str) -> tuple[int, dict[str, float]]:
    """The run's rows once the writer's queue is empty and the count has stayed the same for 2 s."""
    counts: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        log_metrics = prediction_log_metrics(port)
        with psycopg.connect(database_url) as conn:
            query = "SELECT count(*) FROM predictions WHERE client_id = %s"
            counts.append(conn.execute(query, (client_id,)).fetchone()[0])
        if log_metrics.get("prediction_log_queue_depth") == 0 and counts[-5:] == [counts[-1]] * 5:
            return counts[-1], log_metrics
        time.sleep(0.5)
    raise SystemExit(f"soak: the prediction log did not drain in 120 s (rows: {counts[-5:]}, {log_metrics})")


def prediction_log_metrics(port: int) -> dict[str, float]:
    text = metrics_text(port)
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if name.startswith("prediction_log_") and not name.endswith("_created")
    }


if __name__ == "__main__":
    raise SystemExit(main())

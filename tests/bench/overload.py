"""task bench's overload runs: far more clients than the function can serve (wrk, 256 connections, 10 s timeout),
against its own peak at concurrency 8 measured just before on the same photo.

wrk's latency mixes the admitted requests with the fast 503s, so the latency of admitted requests is measured
twice: by the function itself (Litestar's http_request_duration_seconds histogram for POST /predict 200, the
difference over the run: its p99 is a bucket's upper bound, from inside the app to the last byte sent), and by a
probe, one more client (http.client, one connection at a time) that POSTs the same photo during the overload and
times its 200s, upload included (it competes with wrk's 256 connections for a slot, so it gets few). Peak RSS
under overload is VmRSS sampled every 50 ms; the c=8 figure is VmHWM before the overload runs (it covers every
earlier round)."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).parent
CONNECTIONS = 256
SECONDS = int(os.environ.get("BENCH_OVERLOAD_SECONDS", "60"))  # shorter for a trial
PROBE_INTERVAL_S = 0.2


def measure(port: int, pid: int, photos: dict[str, Path], multipart) -> dict[str, dict]:
    """Per photo: the c=8 peak, then the overload run with its probe and RSS sampler."""
    url = f"http://127.0.0.1:{port}"
    peaks = {name: _wrk(url, photo, 8, 6)["answered"] for name, photo in photos.items()}
    rss_c8 = _status_mb(pid, "VmHWM")
    results = {}
    for name, photo in photos.items():
        stop = threading.Event()
        probe = Probe(port, *multipart(photo), stop)
        sampler = threading.Thread(target=_sample_rss, args=(pid, stop, rss := []))
        probe.start(), sampler.start()
        before = _admitted_histogram(port)
        figures = _wrk(url, photo, CONNECTIONS, SECONDS, timeout="10s")
        after = _admitted_histogram(port)
        stop.set()
        probe.join(), sampler.join()
        figures |= {"admitted p99 ms": _bucket_percentile(before, after, 0.99) * 1000,
                    "admitted p50 ms": _bucket_percentile(before, after, 0.5) * 1000,"peak c=8 /s": peaks[name], "ratio": figures["answered"] / peaks[name],
                    "probe 200s": len(probe.times), "probe p50 ms": _percentile(probe.times, 50),
                    "probe p99 ms": _percentile(probe.times, 99), "probe other": probe.other,
                    "peak RSS MB": max(rss), "RSS c=8 MB": rss_c8, "RSS ratio": max(rss) / rss_c8}  # fmt: skip
        results[name] = figures
    return results


def _wrk(url: str, photo: Path, connections: int, seconds: int, timeout: str = "10s") -> dict:
    done = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--timeout", timeout, "--latency",
         "-s", str(HERE / "overload.lua"), url],
        env={**os.environ, "BENCH_IMAGE": str(photo), "BENCH_SCRIPTS": str(HERE)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    requests, duration_us, connect, read, write, timeouts, p99 = next(
        x for x in lines if x.startswith("OVERLOAD ")
    ).split()[1:]
    statuses = {int(x.split()[1]): int(x.split()[2]) for x in lines if x.startswith("STATUS ")}
    seconds_run = int(duration_us) / 1e6
    return {
        "answered": statuses.get(200, 0) / seconds_run,
        "statuses": statuses,
        "503 with Retry-After": int(next(x for x in lines if x.startswith("RETRY_AFTER ")).split()[1]),
        "socket errors": {"connect": int(connect), "read": int(read), "write": int(write)},
        "timeouts": int(timeouts),
        "wrk p99 ms (200s and 503s)": float(p99),
    }


class Probe(threading.Thread):
    def __init__(self, port: int, body: bytes, content_type: str, stop: threading.Event):
        super().__init__()
        self.port, self.body, self.content_type, self.stop = port, body, content_type, stop
        self.times: list[float] = []
        self.other: dict[str, int] = {}

    def run(self) -> None:
        """Sends again at once after a 503 (as wrk's clients do, so it gets its share of the admissions), and
        waits PROBE_INTERVAL_S after a 200."""
        wait = PROBE_INTERVAL_S
        while not self.stop.wait(wait):
            started = time.perf_counter()
            outcome = self._one()
            if outcome == "200":
                self.times.append((time.perf_counter() - started) * 1000)
            else:
                self.other[outcome] = self.other.get(outcome, 0) + 1
            wait = PROBE_INTERVAL_S if outcome == "200" else 0

    def _one(self) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", "/predict", self.body, {"Content-Type": self.content_type})
            response = connection.getresponse()
            response.read()
            return str(response.status)
        except OSError as exc:
            return type(exc).__name__
        finally:
            connection.close()


def metrics_text(port: int) -> str:
    """The function's /metrics (Prometheus text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def _admitted_histogram(port: int) -> dict[float, float]:
    """Cumulative counts of POST /predict 200s by upper bound (seconds), from the function's /metrics."""
    text = metrics_text(port)
    found = re.findall(r'^http_request_duration_seconds_bucket\{[^}]*le="([^"]+)"[^}]*path="/predict"[^}]*'
                       r'status_code="200"\} (\S+)$', text, re.MULTILINE)  # fmt: skip
    return {float(bound): float(count) for bound, count in found}


def _bucket_percentile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket that holds the q-th of the requests between the two scrapes."""
    counts = {bound: count - before.get(bound, 0) for bound, count in sorted(after.items())}
    total = counts.get(float("inf"), 0)
    if not total:
        return float("nan")
    return next(bound for bound, count in counts.items() if count >= q * total)


def _sample_rss(pid: int, stop: threading.Event, samples: list[float]) -> None:
    while not stop.wait(0.05):
        samples.append(_status_mb(pid, "VmRSS"))


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def print_overload(results: dict[str, dict], out: Console) -> None:
    title = f"function fp32 overloaded: wrk c={CONNECTIONS} for {SECONDS} s, --timeout 10s, /predict"
    table = Table(title=title)
    columns = ["answered 200/s", "peak c=8 /s", "ratio", "503s", "with Retry-After", "other statuses",
               "socket errors", "timeouts", "admitted p50 ms", "admitted p99 ms", "probe p99 ms", "peak RSS MB",
               "RSS c=8 MB"]  # fmt: skip
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    for name, f in results.items():
        others = {s: n for s, n in f["statuses"].items() if s not in (200, 503)}
        errors = ", ".join(f"{k} {v}" for k, v in f["socket errors"].items() if v) or "0"
        table.add_row(name, f"{f['answered']:.1f}", f"{f['peak c=8 /s']:.1f}", f"{f['ratio']:.2f}",
                      str(f["statuses"].get(503, 0)), str(f["503 with Retry-After"]), str(others or "none"),
                      errors, str(f["timeouts"]), f"≤ {f['admitted p50 ms']:.0f}", f"≤ {f['admitted p99 ms']:.0f}",
                      f"{f['probe p99 ms']:.0f} ({f['probe 200s']})",
                      f"{f['peak RSS MB']:.0f}", f"{f['RSS c=8 MB']:.0f}")  # fmt: skip
    out.print(table)
    for name, f in results.items():
        out.print(f"  {name}: answered / c=8 peak {f['ratio']:.2f} (target >= 0.9); peak RSS / c=8 peak RSS "
                  f"{f['RSS ratio']:.2f} (target <= 2); every non-200 a 503 with Retry-After: "
                  f"{_all_shed_properly(f)}; admitted p99 ≤ {f['admitted p99 ms']:.0f} ms in the function, "
                  f"{f['probe p99 ms']:.0f} ms at the probe over {f['probe 200s']} 200s (its other answers: "
                  f"{f['probe other'] or 'none'})")  # fmt: skip
    out.print("  socket errors: a 503 closes its connection without reading the body, so wrk, still writing it, "
              "may see the close (a write or read error) instead of the 503.")  # fmt: skip


def _all_shed_properly(f: dict) -> str:
    shed = f["statuses"].get(503, 0)
    ok = set(f["statuses"]) <= {200, 503} and f["503 with Retry-After"] == shed and not f["timeouts"]
    return "yes" if ok else "NO"

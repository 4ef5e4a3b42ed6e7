"""The soak's figures from its answers and samples: per-interval throughput and latency, the pass criteria, and
the summary table."""

from __future__ import annotations

import statistics
from collections import Counter

import numpy as np
from rich.console import Console
from rich.table import Table

from tests.soak.load import Answer

INTERVAL_S = 5.0
RSS_GROWTH_LIMIT = 0.10
FD_TOLERANCE = 2  # the load's connections: one closed after a 413 and opened again may be caught in between
THREAD_TOLERANCE = 0


def evaluate(answers: list[Answer], samples: list[dict], rows: int, log_metrics: dict, info: dict) -> dict:
    seconds = info["seconds"]
    warm_up = min(
        60.0, seconds / 4
    )  # a short run keeps the same shape: warm-up, first window, ..., last window
    loaded = [s for s in samples if s["load"]]
    first = [s for s in loaded if warm_up <= s["t"] < 2 * warm_up]
    last = [s for s in loaded if s["t"] >= seconds - warm_up]
    by_kind = {
        kind: dict(Counter(str(a.status) for a in answers if a.kind == kind)) for kind in info["kinds"]
    }
    unexpected = {kind: {s: n for s, n in statuses.items() if s != str(info["kinds"][kind])}
                  for kind, statuses in by_kind.items()}  # fmt: skip
    unexpected = {kind: statuses for kind, statuses in unexpected.items() if statuses}
    ok = [a for a in answers if a.status == 200]
    rss = _median(first, "rss_mb"), _median(last, "rss_mb")
    fds, threads = (
        (_median(first, "fds"), _median(last, "fds")),
        (_median(first, "threads"), _median(last, "threads")),
    )
    criteria = {
        "unexpected answers": {"measured": sum(n for s in unexpected.values() for n in s.values()),
                               "limit": "0 (5xx, socket errors, timeouts, a wrong 4xx)", "detail": unexpected},
        "rows logged = 200 answers": {"measured": f"{rows} rows, {len(ok)} answers", "limit": "equal",
                                      "pass": rows == len(ok)},
        "RSS growth after warm-up": {"measured": rss[1] / rss[0] - 1, "limit": f"< {RSS_GROWTH_LIMIT:.0%}",
                                     "pass": rss[1] / rss[0] - 1 < RSS_GROWTH_LIMIT},
        "open fds, first -> last window": {"measured": f"{fds[0]:g} -> {fds[1]:g}",
                                           "limit": f"+{FD_TOLERANCE} at most", "pass": fds[1] - fds[0] <= FD_TOLERANCE},
        "threads, first -> last window": {"measured": f"{threads[0]:g} -> {threads[1]:g}",
                                          "limit": f"+{THREAD_TOLERANCE} at most",
                                          "pass": threads[1] - threads[0] <= THREAD_TOLERANCE},
    }  # fmt: skip
    criteria["unexpected answers"]["pass"] = criteria["unexpected answers"]["measured"] == 0
    return {
        "info": {
            **info,
            "warm_up_s": warm_up,
            "windows_s": [[warm_up, 2 * warm_up], [seconds - warm_up, seconds]],
        },
        "answers": len(answers),
        "by_kind": by_kind,
        "req_per_s": len(answers) / seconds,
        "predictions_per_s": len(ok) / seconds,
        "latency_ms": {kind: _percentiles([a for a in answers if a.kind == kind]) for kind in info["kinds"]}
        | {"all 200": _percentiles(ok)},
        "rss_mb": {
            "first window median": rss[0],
            "last window median": rss[1],
            "peak (VmHWM)": max(s["hwm_mb"] for s in samples),
        },  # fmt: skip
        "idle_before_after": {
            key: [samples[0][key], samples[-1][key]] for key in ("rss_mb", "fds", "threads")
        },
        "function_cpu_percent": 100 * (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / (samples[-1]["t"] or 1),
        "load_cpu_percent_of_one_core": 100 * info["load_cpu_seconds"] / seconds,
        "rows": rows,
        "prediction_log": log_metrics,
        "criteria": criteria,
        "samples": samples,
        "intervals": intervals(answers, seconds),
    }


def intervals(answers: list[Answer], seconds: float) -> list[dict]:
    """Answers by the interval they ended in: req/s (all answers), predictions/s, p50/p99 of the 200s."""
    bins: dict[int, list[Answer]] = {}
    for answer in answers:
        bins.setdefault(min(int(answer.ended // INTERVAL_S), int(seconds // INTERVAL_S) - 1), []).append(
            answer
        )
    return [
        {"t": (i + 1) * INTERVAL_S, "req_per_s": len(a) / INTERVAL_S,
         "predictions_per_s": sum(x.status == 200 for x in a) / INTERVAL_S,
         **_percentiles([x for x in a if x.status == 200])}
        for i, a in sorted(bins.items())
    ]  # fmt: skip


def _percentiles(answers: list[Answer]) -> dict[str, float]:
    if not answers:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    ms = np.array([a.seconds for a in answers]) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _median(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def print_summary(result: dict, out: Console) -> None:
    info = result["info"]
    table = Table(title=f"task soak: {info['seconds'] / 60:g} min at concurrency {info['connections']}, "
                  f"{info['model']}, {info['cpus']} CPUs, prediction log on")  # fmt: skip
    for column in ("upload", "expected", "answers", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "upload" else "right")
    for kind, expected in info["kinds"].items():
        latency = result["latency_ms"].get(kind, {})
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(result["by_kind"][kind].items()))
        table.add_row(kind, str(expected), statuses, _ms(latency.get("p50_ms")), _ms(latency.get("p99_ms")))
    out.print(table)
    rss = result["rss_mb"]
    out.print(f"  {result['answers']} answers, {result['req_per_s']:.1f} req/s, {result['predictions_per_s']:.1f} "
              f"predictions/s; 200s p50 {result['latency_ms']['all 200']['p50_ms']:.1f} ms, p99 "
              f"{result['latency_ms']['all 200']['p99_ms']:.1f} ms")  # fmt: skip
    out.print(f"  RSS {rss['first window median']:.1f} MB -> {rss['last window median']:.1f} MB (windows "
              f"{info['windows_s']} s), peak {rss['peak (VmHWM)']:.1f} MB; function CPU "
              f"{result['function_cpu_percent']:.0f}% of one core, load generator "
              f"{result['load_cpu_percent_of_one_core']:.1f}%")  # fmt: skip
    idle = result["idle_before_after"]
    out.print(f"  idle, before the load -> after it: RSS {idle['rss_mb'][0]:.1f} -> {idle['rss_mb'][1]:.1f} MB, "
              f"fds {idle['fds'][0]} -> {idle['fds'][1]}, threads {idle['threads'][0]} -> {idle['threads'][1]}")  # fmt: skip
    out.print(f"  prediction log: {result['prediction_log']}")
    criteria = Table(title="pass criteria")
    for column in ("criterion", "measured", "limit", "result"):
        criteria.add_column(column)
    for name, check in result["criteria"].items():
        measured = check["measured"]
        shown = f"{measured:+.1%}" if isinstance(measured, float) else str(measured)
        verdict = "[green]pass[/]" if check["pass"] else "[red]FAIL[/]"
        criteria.add_row(
            name, shown + (f" {check['detail']}" if check.get("detail") else ""), check["limit"], verdict
        )
    out.print(criteria)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"

"""docs/soak.png: RSS, throughput and latency over the soak, stacked, with the pass criteria as the caption."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def draw(result: dict, path: Path) -> None:
    info, samples, intervals = result["info"], result["samples"], result["intervals"]
    minutes = [s["t"] / 60 for s in samples]
    at = [i["t"] / 60 for i in intervals]
    figure, (rss, rate, latency) = plt.subplots(3, 1, figsize=(10, 8), dpi=100, sharex=True)
    rss.plot(minutes, [s["rss_mb"] for s in samples], label="RSS (VmRSS)")
    rss.plot(minutes, [s["hwm_mb"] for s in samples], linestyle=":", label="peak (VmHWM)")
    rss.set_ylabel("MB")
    rate.plot(at, [i["req_per_s"] for i in intervals], label="all answers")
    rate.plot(at, [i["predictions_per_s"] for i in intervals], label="predictions (200)")
    rate.set_ylabel("req/s")
    latency.plot(at, [i["p50_ms"] for i in intervals], label="p50")
    latency.plot(at, [i["p99_ms"] for i in intervals], label="p99")
    latency.set_ylabel("ms (200 answers)")
    latency.set_xlabel("minutes")
    for axes in (rss, rate, latency):
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize=8)
        for start, end in info["windows_s"]:
            axes.axvspan(start / 60, end / 60, color="0.9", zorder=0)
        axes.axvline(info["warm_up_s"] / 60, color="0.5", linewidth=0.8)
    rss.set_title(
        f"task soak: {info['seconds'] / 60:g} min, concurrency {info['connections']}, {info['model']}, "
        f"log on, {_bad_share(info)} bad uploads\nshaded: the first and last windows after warm-up",
        fontsize=10,
    )
    figure.text(0.01, 0.005, caption(result), fontsize=8, family="monospace", va="bottom")
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def caption(result: dict) -> str:
    parts = []
    for name, check in result["criteria"].items():
        measured = check["measured"]
        shown = f"{measured:+.1%}" if isinstance(measured, float) else str(measured)
        parts.append(
            f"{name}: {shown} (limit {check['limit'].split(' (')[0]}) {'PASS' if check['pass'] else 'FAIL'}"
        )
    return "\n".join(textwrap.wrap("; ".join(parts), width=140))


def _bad_share(info: dict) -> str:
    cycle = info["cycle"]
    return f"{sum(info['kinds'][kind] != 200 for kind in cycle) / len(cycle):.0%}"


if (
    __name__ == "__main__"
):  # redraw from a run's figures: python -m tests.soak.plot [last-run.json [soak.png]]
    import json
    import sys

    here = Path(__file__).parent
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "last-run.json"
    draw(
        json.loads(source.read_text()),
        Path(sys.argv[2]) if len(sys.argv) > 2 else here.parents[1] / "docs" / "soak.png",
    )

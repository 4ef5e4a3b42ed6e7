"""fish-convert: the command the training DAG runs after registering a Keras version.

Exit codes: 0 converted or already done, 1 a check failed (nothing registered), 2 bad usage, bad inputs
(classes file, samples, a model that does not fit its classes or cannot be served) or model/version/classes not
found, 3 MLflow unreachable, 4 the converter crashed (a bug or the environment: a retry may help; with --debug the
traceback goes to stderr), 130 interrupted. With --json, stdout holds one JSON document on every exit.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from convert import quiet

# TensorFlow's and mlflow's chatter would bury the progress lines (convert/quiet.py); errors still show.
quiet.set_environment()

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from convert import export, preprocessing, quantize  # noqa: E402
from convert.errors import ConvertError  # noqa: E402
from convert.pipeline import Options, Result, run  # noqa: E402


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors, with the message kept for the JSON document."""

    last_error = ""

    def error(self, message: str):
        _Parser.last_error = message
        super().error(message)


def parse_args(argv: list[str] | None) -> tuple[Options, bool]:
    p = _Parser(
        prog="fish-convert",
        description="Convert a registered Keras model version to a verified ONNX version in the same registry.",
        epilog="Exit codes: 0 converted or already done; 1 a check failed; 2 bad usage, bad inputs, a model "
        "that cannot be served, or model/classes not found; 3 MLflow unreachable; 4 the converter crashed "
        "(retry; --debug shows the traceback); 130 interrupted.",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--model", default=Options.model, help="registered model name (default: %(default)s)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--version", help="Keras version to convert (default: the newest Keras version)")
    source.add_argument(
        "--from-alias", metavar="ALIAS", help="convert the Keras version this alias points at"
    )
    p.add_argument("--target-name", help="register the ONNX version under this model (default: --model)")
    p.add_argument("--alias", default=Options.alias, help="alias moved to the new ONNX version (%(default)s)")
    p.add_argument(
        "--int8-alias", default=Options.int8_alias, help="alias for the int8 version (%(default)s)"
    )
    p.add_argument("--classes", type=Path, help='class indices JSON {"name": index} if the run has none')
    p.add_argument("--samples", type=Path, help="folder of check images (default: the run's samples/)")
    p.add_argument(
        "--input-scaling",
        choices=sorted(preprocessing.MODES),
        help="the training-time preprocessing baked into the graph: unit = x/255, symmetric or tf = "
        "x/127.5-1, torch = x/255 then ImageNet mean/std, caffe = RGB->BGR minus the ImageNet mean, none = the "
        "model scales itself. Default: the run's param 'preprocessing', else none for a model that starts with "
        "Rescaling/Normalization, else unit",
    )
    p.add_argument(
        "--input-size",
        type=_size,
        metavar="HxW",
        help="the image size to serve a model that takes any size at (the size it was trained at)",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (or a .py file) that registers the model's custom layers first; repeatable",
    )
    p.add_argument(
        "--trust-lambda",
        action="store_true",
        help="load a model with Lambda layers, whose Python code Keras runs (only for artifacts you trust)",
    )
    p.add_argument(
        "--quantize", choices=["int8"], help="also register a static int8 version, gated on accuracy"
    )
    p.add_argument("--force", action="store_true", help="convert even if an ONNX version exists already")
    p.add_argument(
        "--tolerance",
        type=float,
        help="parity: max |Δprobability| (default: 1e-3 for a float32 model, 1e-1 for mixed_float16 or "
        "bfloat16)",
    )
    p.add_argument(
        "--min-int8-agreement",
        type=float,
        default=quantize.MIN_INT8_AGREEMENT,
        help="int8 gate: minimum top-1 agreement with Keras on held-out images (%(default)s)",
    )
    p.add_argument("--opset", type=int, default=export.DEFAULT_OPSET, help="ONNX opset (%(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    p.add_argument("--debug", action="store_true", help="on a crash, print the traceback on stderr")
    a = p.parse_args(argv)
    return (
        Options(
            tracking_uri=a.tracking_uri,
            model=a.model,
            version=a.version,
            from_alias=a.from_alias,
            target_name=a.target_name,
            alias=a.alias,
            int8_alias=a.int8_alias,
            classes=a.classes,
            samples=a.samples,
            input_scaling=a.input_scaling,
            input_size=a.input_size,
            imports=tuple(a.imports),
            trust_lambda=a.trust_lambda,
            quantize=a.quantize,
            force=a.force,
            tolerance=a.tolerance,
            min_int8_agreement=a.min_int8_agreement,
            opset=a.opset,
        ),
        a.json,
        a.debug,
    )


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×,]\s*(\d+)\s*)?", text, re.IGNORECASE)
    if not match or int(match.group(1)) < 1 or int(match.group(2) or 1) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: use HxW, e.g. 224x224 (or one number)")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


CRASHED = 4
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    try:
        options, as_json, debug = parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, bad usage is 2
        code = int(exc.code or 0)
        if code and "--json" in (sys.argv[1:] if argv is None else argv):
            print(json.dumps({"ok": False, "exit_code": code, "error": f"bad usage: {_Parser.last_error}"}))
        return code
    quiet.install()
    progress = Console(file=sys.stderr)  # the real stderr, not the filtered one below: spinners pass at once
    started = time.monotonic()
    try:
        # Libraries print on stdout; stdout belongs to the table or the JSON document, so their lines go to
        # stderr, less the known noise.
        with quiet.printed_noise_dropped():
            source, target, results = run(options, _rich_step(progress))
    except ConvertError as exc:
        _report_failure(exc, as_json, progress)
        return exc.exit_code
    except KeyboardInterrupt:
        stopped = ConvertError("interrupted: run it again to finish (a registered version is published then)")
        _report_failure(stopped, as_json, progress, INTERRUPTED)
        return INTERRUPTED
    except Exception as exc:  # a bug or the environment; the DAG retries exit 4, it stops on exit 1
        if debug:
            traceback.print_exc(file=sys.stderr)
        crash = ConvertError(
            f"fish-convert crashed: {type(exc).__name__}: {_first_line(exc)}; this is a bug or a problem of the "
            "environment, not a failed check: a retry may help (--debug prints the traceback)",
            {"exception": type(exc).__name__},
        )
        _report_failure(crash, as_json, progress, CRASHED)
        return CRASHED
    elapsed = time.monotonic() - started
    if as_json:
        print(json.dumps(_summary(source, target, results, elapsed), indent=2))
    else:
        Console(width=None if sys.stdout.isatty() else 120).print(_table(source, target, results, elapsed))
    return 0


def _rich_step(console: Console):
    # Text from models and the registry is never markup: a shape's "[None, 64, 64, 1]" would vanish.
    def step(description: str, work):
        started = time.monotonic()
        with console.status(f"{escape(description)}…"):
            value = work()
        console.print(f"[green]✓[/] {escape(description)} [dim]({time.monotonic() - started:.1f} s)[/]")
        return value

    return step


def _report_failure(exc: ConvertError, as_json: bool, console: Console, code: int | None = None) -> None:
    code = exc.exit_code if code is None else code
    console.print(f"[red]✗ {escape(str(exc))}[/]")
    for key, value in exc.details.items():
        console.print(f"    {escape(str(key))}: {escape(str(value))}")
    if as_json:
        print(json.dumps({"ok": False, "exit_code": code, "error": str(exc), "details": exc.details}))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else "(no message)"


def _summary(source, target: str, results: list[Result], elapsed: float) -> dict:
    return {
        "ok": True,
        "source": {"model": source.name, "version": source.version, "run_id": source.run_id},
        "target_model": target,
        "results": [asdict(r) for r in results],
        "seconds": round(elapsed, 2),
        "peak_rss_mb": peak_rss_mb(),  # what a DAG worker or Job must have for this model
    }


def peak_rss_mb() -> int:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    converter started by a large process (a test runner, a scheduler) would report its parent's size."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) // 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux reports KiB


def _table(source, target: str, results: list[Result], elapsed: float) -> Table:
    table = Table(title=escape(f"{source.name} version {source.version} (Keras) → {target}, {elapsed:.1f} s"))
    for column in (
        "precision",
        "ONNX version",
        "status",
        "alias",
        "max |Δp|",
        "top-1 agreement",
        "int8 speed-up",
    ):
        table.add_column(column)
    for r in results:
        f = r.figures
        agreement = f.get("parity_top1_agreement", f.get("int8_top1_agreement"))
        table.add_row(
            r.precision,
            r.version,
            r.status,
            escape(r.alias or ""),
            _fmt(f.get("parity_max_abs_diff"), ".2g"),
            _fmt(agreement, ".1%"),
            _fmt(f.get("int8_speedup"), ".2f", "×"),
        )
    return table


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


if __name__ == "__main__":
    sys.exit(main())

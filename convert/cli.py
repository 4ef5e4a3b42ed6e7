"""fish-convert: the command the training DAG runs after registering a Keras version.

Exit codes: 0 converted or already done, 1 a check failed (nothing registered), 2 bad usage, bad inputs
(classes file, samples, a model that does not fit its classes) or model/version/classes not found, 3 MLflow
unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from convert import quiet

# TensorFlow's and mlflow's chatter would bury the progress lines (convert/quiet.py); errors still show.
quiet.set_environment()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from convert import export, parity, quantize  # noqa: E402
from convert.errors import ConvertError  # noqa: E402
from convert.pipeline import Options, Result, run  # noqa: E402


def parse_args(argv: list[str] | None) -> tuple[Options, bool]:
    p = argparse.ArgumentParser(
        prog="fish-convert",
        description="Convert a registered Keras model version to a verified ONNX version in the same registry.",
        epilog="Exit codes: 0 converted or already done; 1 a check failed; 2 bad usage, bad inputs or "
        "model/classes not found; 3 MLflow unreachable.",
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
        choices=sorted(export.SCALINGS),
        default=Options.input_scaling,
        help="training-time pixel scaling baked into the graph: unit = x/255 (default), "
        "symmetric = x/127.5-1, none = the model scales itself",
    )
    p.add_argument(
        "--quantize", choices=["int8"], help="also register a static int8 version, gated on accuracy"
    )
    p.add_argument("--force", action="store_true", help="convert even if an ONNX version exists already")
    p.add_argument("--tolerance", type=float, default=parity.DEFAULT_TOLERANCE, help="max |Δprobability|")
    p.add_argument(
        "--min-int8-agreement",
        type=float,
        default=quantize.MIN_INT8_AGREEMENT,
        help="int8 gate: minimum top-1 agreement with Keras on held-out images (%(default)s)",
    )
    p.add_argument("--opset", type=int, default=export.DEFAULT_OPSET, help="ONNX opset (%(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    a = p.parse_args(argv)
    return Options(
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
        quantize=a.quantize,
        force=a.force,
        tolerance=a.tolerance,
        min_int8_agreement=a.min_int8_agreement,
        opset=a.opset,
    ), a.json


def main(argv: list[str] | None = None) -> int:
    try:
        options, as_json = parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, bad usage is 2
        return int(exc.code or 0)
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
    elapsed = time.monotonic() - started
    if as_json:
        print(json.dumps(_summary(source, target, results, elapsed), indent=2))
    else:
        Console(width=None if sys.stdout.isatty() else 120).print(_table(source, target, results, elapsed))
    return 0


def _rich_step(console: Console):
    def step(description: str, work):
        started = time.monotonic()
        with console.status(f"{description}…"):
            value = work()
        console.print(f"[green]✓[/] {description} [dim]({time.monotonic() - started:.1f} s)[/]")
        return value

    return step


def _report_failure(exc: ConvertError, as_json: bool, console: Console) -> None:
    console.print(f"[red]✗ {exc}[/]")
    for key, value in exc.details.items():
        console.print(f"    {key}: {value}")
    if as_json:
        print(
            json.dumps({"ok": False, "exit_code": exc.exit_code, "error": str(exc), "details": exc.details})
        )


def _summary(source, target: str, results: list[Result], elapsed: float) -> dict:
    return {
        "ok": True,
        "source": {"model": source.name, "version": source.version, "run_id": source.run_id},
        "target_model": target,
        "results": [asdict(r) for r in results],
        "seconds": round(elapsed, 2),
    }


def _table(source, target: str, results: list[Result], elapsed: float) -> Table:
    table = Table(title=f"{source.name} version {source.version} (Keras) → {target}, {elapsed:.1f} s")
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
            r.alias or "",
            _fmt(f.get("parity_max_abs_diff"), ".2g"),
            _fmt(agreement, ".1%"),
            _fmt(f.get("int8_speedup"), ".2f", "×"),
        )
    return table


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


if __name__ == "__main__":
    sys.exit(main())

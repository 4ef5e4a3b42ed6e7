"""The quickstart's first command: a local MLflow server, the demo model registered as the training DAG
leaves it, converted to ONNX (fp32 and int8), the registered versions shown, and the function serving the
`onnx` alias on http://127.0.0.1:8080 with an embedded PostgreSQL prediction log.

Runs again in seconds: the server is reused if it answers, training is skipped if a Keras version exists,
and the converter is idempotent.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

from convert import quiet

quiet.set_environment()  # before TensorFlow and mlflow are imported: see convert/quiet.py

from mlflow import MlflowClient  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from convert import cli  # noqa: E402
from convert.demo import mlflow_server  # noqa: E402

MODEL = "fish-classification-mobilenetv2"
# Beyond the convert extra, the demo runs the function and an embedded PostgreSQL: the `demo` extra has both.
DEMO_MODULES = ("pgserver", "litestar", "uvicorn", "psycopg")
# Below this held-out accuracy the demo's model names too many sample photos wrong (a busy machine can leave it there).
GOOD_ACCURACY = 0.9
console = Console(width=None if sys.stdout.isatty() else 120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fish-demo", description=__doc__)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("DEMO_HOME", ".demo")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_MLFLOW_PORT", "5000")))
    parser.add_argument(
        "--function-port", type=int, default=int(os.environ.get("DEMO_FUNCTION_PORT", "8080"))
    )
    parser.add_argument("--stop", action="store_true", help="stop the demo's servers and exit")
    args = parser.parse_args(argv)
    url = f"http://127.0.0.1:{args.port}"
    if args.stop:
        stop_function(args.home)
        stop_postgres(args.home)
        return stop_server(args.home)
    require_demo_extra()
    quiet.install()
    ensure_server(args.home, args.port, url)
    ensure_keras_version(url, args.home / "samples", retrain_command(args))
    code = cli.main(["--tracking-uri", url, "--model", MODEL])
    if code == 0 and cli.main(["--tracking-uri", url, "--model", MODEL, "--quantize", "int8"]) == 1:
        # The gate did its job; the fp32 version still serves, so the demo goes on.
        console.print("[yellow]The int8 version did not pass its accuracy gate: only fp32 is registered.[/]")
    console.print(versions_table(url))
    if code != 0:
        return code
    database_url = ensure_postgres(args.home)
    function_url = start_function(args.home, args.function_port, url, database_url)
    sample = next(iter(sorted((args.home / "samples").rglob("*.jpg"))), None)
    console.print(f"MLflow UI (runs, registered versions and their tags): {url}")
    console.print(f"Stop everything: {stop_command(args)}")
    if sample:
        console.print(f"From a shell: curl -F file=@{sample} {function_url}/predict")
    if answers_html(f"{function_url}/"):
        console.print(f"[bold]Open {function_url}/ in a browser to classify photos.[/]")
    else:  # a function without the web UI: its API documentation is the page to open
        console.print(f"[bold]Open {function_url}/schema/swagger in a browser to try /predict.[/]")
    return 0


def stop_command(args: argparse.Namespace) -> str:
    defaults = (Path(".demo"), 5000, 8080)
    if (args.home, args.port, args.function_port) == defaults:
        return "./taskw demo:stop"
    ports = f"--port {args.port} --function-port {args.function_port}"
    return f"python -m convert.demo --stop --home {args.home} {ports}"


def retrain_command(args: argparse.Namespace) -> str:
    """Training is skipped while a Keras version exists: a fresh demo home is what makes it train again."""
    if (args.home, args.port, args.function_port) == (Path(".demo"), 5000, 8080):
        start = "./taskw demo"
    else:
        start = f"python -m convert.demo --home {args.home} --port {args.port} --function-port {args.function_port}"
    return f"{stop_command(args)} && rm -rf {args.home} && {start}"


def answers_html(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200 and "text/html" in response.headers.get("content-type", "")
    except OSError:
        return False


def require_demo_extra() -> None:
    """Say which extra to install before minutes of training, not when the function or PostgreSQL starts."""
    missing = [name for name in DEMO_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(
            f"fish-demo needs the demo extra ({', '.join(missing)} not installed): "
            'pip install "fish-function[demo]"'
        )


def ensure_server(home: Path, port: int, url: str) -> None:
    if mlflow_server.is_healthy(url):
        console.print(f"[green]✓[/] MLflow server already answering at {url}")
        return
    with console.status(f"Starting mlflow server at {url} (SQLite and artifacts under {home / 'mlflow'})…"):
        process = mlflow_server.start(home / "mlflow", port)
    (home / "mlflow" / "server.pid").write_text(str(process.pid))
    console.print(f"[green]✓[/] MLflow server started at {url} (pid {process.pid})")


def ensure_keras_version(url: str, samples_dir: Path, retrain: str) -> None:
    client = MlflowClient(url)
    keras_versions = [
        v for v in client.search_model_versions(f"name='{MODEL}'") if v.tags.get("format") != "onnx"
    ]
    if keras_versions:
        console.print(f"[green]✓[/] '{MODEL}' has a Keras version already: training skipped")
        warn_if_undertrained(client, max(keras_versions, key=lambda v: int(v.version)).run_id, retrain)
        return
    from convert.demo.seed import seed_registry  # imports TensorFlow: only when training

    console.print("Training the demo MobileNetV2 on synthetic fish photos (under 5 minutes on 2 cores)…")
    with quiet.printed_noise_dropped(stdout_to_stderr=False):
        version = seed_registry(url, MODEL, samples_dir, log=lambda line: console.print(f"  {line}"))
    console.print(f"[green]✓[/] Registered Keras version {version} of '{MODEL}'")
    warn_if_undertrained(client, client.get_model_version(MODEL, version).run_id, retrain)


def warn_if_undertrained(client: MlflowClient, run_id: str | None, retrain: str) -> None:
    """One plain line when the model is too weak for the demo (a busy machine cut its training short)."""
    accuracy = client.get_run(run_id).data.metrics.get("heldout_accuracy") if run_id else None
    if accuracy is not None and accuracy < GOOD_ACCURACY:
        one_in = round(1 / max(1 - accuracy, 1e-9))
        console.print(
            f"[yellow]Held-out accuracy is only {accuracy:.0%} (a busy machine cut training short): the demo will "
            f"name about 1 photo in {one_in} wrong. To train again on an idle machine: {retrain}[/]"
        )


def versions_table(url: str) -> Table:
    client = MlflowClient(url)
    aliases = client.get_registered_model(MODEL).aliases
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    table = Table(title=f"Registered versions of {MODEL}")
    for column in ("version", "format", "precision", "from", "aliases", "checks"):
        table.add_column(column)
    for v in sorted(client.search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version)):
        t = v.tags
        checks = ""
        if "parity_max_abs_diff" in t:
            checks = f"max |Δp| {float(t['parity_max_abs_diff']):.1g}, top-1 {float(t['parity_top1_agreement']):.0%}"
        elif "int8_top1_agreement" in t:
            checks = (
                f"top-1 vs Keras {float(t['int8_top1_agreement']):.1%}, {float(t['int8_speedup']):.2f}× fp32"
            )
        source = f"v{t['source_version']}" if "source_version" in t else ""
        table.add_row(v.version, t.get("format", "keras"), t.get("precision", ""), source,
                      ", ".join(sorted(by_version.get(str(v.version), []))), checks)  # fmt: skip
    return table


def ensure_postgres(home: Path) -> str:
    """An embedded PostgreSQL (pgserver) under home/postgres that outlives this command."""
    with quiet_pgserver():
        import pgserver

        server = pgserver.get_server(home / "postgres", cleanup_mode=None)
    console.print(f"[green]✓[/] PostgreSQL for the prediction log at {home / 'postgres'}")
    return server.get_uri()


def stop_postgres(home: Path) -> None:
    if not (home / "postgres" / "postmaster.pid").exists():
        return
    with quiet_pgserver():
        import pgserver
        from pgserver._commands import pg_ctl

        server = pgserver.get_server(home / "postgres", cleanup_mode=None)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    console.print("demo PostgreSQL stopped")


@contextlib.contextmanager
def quiet_pgserver() -> Iterator[None]:
    """platformdirs, under pgserver, warns that XDG_RUNTIME_DIR is not set and that it falls back to /tmp."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        yield


def start_function(home: Path, port: int, tracking_uri: str, database_url: str) -> str:
    """(Re)start the function in the background so it serves what the alias points at now."""
    stop_function(home)
    env = {**os.environ, "PORT": str(port), "MLFLOW_TRACKING_URI": tracking_uri, "DATABASE_URL": database_url,
           "MODEL_CACHE_DIR": str((home / "model-cache").resolve()),
           "SHUTDOWN_DRAIN_SECONDS": "0"}  # fmt: skip  # no load balancer in front: demo:stop stops at once
    log = (home / "function.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "function"], env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    (home / "function.pid").write_text(str(process.pid))
    url = f"http://127.0.0.1:{port}"
    with console.status(f"Starting the function on {url}…"):
        deadline = time.monotonic() + 60
        while not mlflow_server.is_healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the function did not start; see {home / 'function.log'}")
            time.sleep(0.1)
    console.print(f"[green]✓[/] Function serving the 'onnx' alias at {url} (pid {process.pid})")
    return url


def stop_function(home: Path) -> None:
    pid_file = home / "function.pid"
    if pid_file.exists():
        if mlflow_server.stop_group(int(pid_file.read_text())):
            console.print("demo function stopped")
        pid_file.unlink()


def stop_server(home: Path) -> int:
    pid_file = home / "mlflow" / "server.pid"
    if not pid_file.exists():
        console.print("no demo MLflow server recorded")
        return 0
    stopped = mlflow_server.stop_group(int(pid_file.read_text()))
    console.print("demo MLflow server stopped" if stopped else "demo MLflow server was not running")
    pid_file.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Third-party chatter kept off the terminal of `fish-convert` and `fish-demo`, so their output reads as what
happened. Only lines known to be noise go: errors, tracebacks and any warning not listed here still show.

- TensorFlow's C++ start-up lines: `TF_CPP_MIN_LOG_LEVEL=2` for its own log, and the absl lines it writes on
  import whatever that says ("oneDNN custom operations are on", "All log messages before absl::InitializeLog()")
  filtered out of file descriptor 2 while `tensorflow` is imported;
- mlflow: INFO logs off (`MLFLOW_LOGGING_LEVEL=WARNING`), no "🏃 View run / 🧪 View experiment" links
  (`MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`), no artifact progress bars, no "Successfully registered model" /
  "Created version" lines (the converter says what it registered), and not its warning that the ONNX model's
  default execution providers list CUDA, which this CPU build of onnxruntime lacks;
- onnxruntime's calibration prints ("Collecting tensor data and making histogram ...").

Each environment variable is only a default: set it yourself (e.g. `MLFLOW_LOGGING_LEVEL=INFO`) to see more.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import io
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator

ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

# Whole lines printed by Python code (mlflow's eprint and run links, onnxruntime's calibrator).
PRINTED_NOISE = re.compile(
    r"(🏃 View run |🧪 View experiment at: |Successfully registered model '|Created version '\d+' of model "
    r"|Registered model '.*' already exists\. Creating a new version of this model"
    r"|Collecting tensor data and making histogram|Finding optimal threshold for each tensor"
    r"|Number of tensors : |Number of histogram bins : |Percentile : \()"
)
# Lines TensorFlow's shared libraries write to file descriptor 2 on import, through absl, before its log is set up.
TENSORFLOW_NOISE = re.compile(
    rb"(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on)"
)
# Logged by mlflow at WARNING: (logger, start of the message).
LOGGED_NOISE = (
    ("mlflow.onnx", "ONNX model declares execution providers"),
    ("mlflow.keras.save", "You are saving a Keras model without specifying model signature"),
)


def set_environment() -> None:
    """Before TensorFlow or mlflow is imported."""
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def install() -> None:
    """For a command's run: mlflow's loggers as the environment says (mlflow may have been imported before
    `set_environment`), its known warnings dropped, TensorFlow's import filtered. Idempotent."""
    logging.getLogger("mlflow").setLevel(os.environ.get("MLFLOW_LOGGING_LEVEL", "WARNING").upper())
    for name, start in LOGGED_NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.start == start for f in logger.filters):
            logger.addFilter(_DropMessage(start))
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


@contextlib.contextmanager
def printed_noise_dropped(stdout_to_stderr: bool = True) -> Iterator[None]:
    """sys.stdout and sys.stderr, line by line, without `PRINTED_NOISE`; stdout goes to stderr unless told
    otherwise (the converter's stdout is for its result only)."""
    with (
        contextlib.redirect_stdout(_LineFilter(sys.stderr if stdout_to_stderr else sys.stdout)) as out,
        contextlib.redirect_stderr(_LineFilter(sys.stderr)) as err,
    ):
        try:
            yield
        finally:
            out.flush()
            err.flush()


class _DropMessage(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


class _LineFilter(io.TextIOBase):
    """A text stream that passes on every line (ended by \\n or \\r) except the noise ones."""

    def __init__(self, target) -> None:
        self._target = target
        self._pending = ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._target.isatty()

    @property
    def encoding(self) -> str:
        return getattr(self._target, "encoding", "utf-8")

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = re.split(r"(?<=[\r\n])", self._pending)
        for line in lines:
            if not PRINTED_NOISE.match(line):
                self._target.write(line)
        return len(text)

    def flush(self) -> None:
        if self._pending and not PRINTED_NOISE.match(self._pending):
            self._target.write(self._pending)
        self._pending = ""
        self._target.flush()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `name` with the other finders, and runs its import with file descriptor 2 filtered."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once: the finders after it do the finding
        spec = None
        for finder in list(sys.meta_path):
            if (find := getattr(finder, "find_spec", None)) and (spec := find(fullname, path, target)):
                break
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _descriptor_filtered(2, TENSORFLOW_NOISE):
            self._loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ... as the real loader answers them
        return getattr(self._loader, name)


@contextlib.contextmanager
def _descriptor_filtered(fd: int, noise: re.Pattern[bytes]) -> Iterator[None]:
    """Everything written to `fd` (by C++ as well as Python) goes through a pipe; a thread passes it on to the
    real `fd` at once, except whole lines that match `noise`. A partial line is held only while it could still
    become one of them, so progress output (a spinner's \\r) is not delayed."""
    try:
        sys.stderr.flush()
        saved = os.dup(fd)
        read_end, write_end = os.pipe()
    except (OSError, ValueError):  # no real descriptor (an embedding host): nothing to filter
        yield
        return

    def forward() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = re.split(rb"(?<=[\r\n])", pending)
            out = b"".join(line for line in lines if not noise.match(line))
            if pending and not _may_become(pending):
                out, pending = out + pending, b""
            if out:
                os.write(saved, out)
        if pending:
            os.write(saved, pending)

    forwarder = threading.Thread(target=forward, name="quiet-import", daemon=True)
    forwarder.start()
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.stderr.flush()
        os.dup2(saved, fd)  # the pipe's last write end closes: the thread reads to the end and stops
        forwarder.join(timeout=5)
        os.close(read_end)
        os.close(saved)


def _may_become(partial: bytes) -> bool:
    """Whether a line begun with `partial` could still turn out to be TensorFlow noise."""
    return b"WARNING: All log messages before absl".startswith(partial[:37]) or bool(
        re.fullmatch(rb"I[\d:. ]*(\d+ [^\r\n]*)?", partial)
    )

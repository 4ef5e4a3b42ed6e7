"""convert/quiet.py: the known third-party noise is dropped from fish-convert's and fish-demo's output, and
nothing else is."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

from convert import quiet


def test_printed_noise_is_dropped_and_the_rest_passes():
    target = io.StringIO()
    stream = quiet._LineFilter(target)
    stream.write("🏃 View run onnx-fp32 at: http://127.0.0.1:5000/#/experiments/1/runs/abc\n")
    stream.write(
        "🧪 View experiment at: http://127.0.0.1:5000/#/experiments/1\nSuccessfully registered model 'm'.\n"
    )
    stream.write("Created version '2' of model 'fish'.\nCollecting tensor data and making histogram ...\n")
    stream.write("Registered model 'fish' already exists. Creating a new version of this model...\n")
    stream.write("Traceback (most recent call last):\n  a real err")
    stream.write("or\nprogress 10%\rprogress 20%\r")
    stream.flush()
    assert (
        target.getvalue()
        == "Traceback (most recent call last):\n  a real error\nprogress 10%\rprogress 20%\r"
    )


def test_stdout_goes_to_stderr_less_the_noise(capsys):
    with quiet.printed_noise_dropped():
        print("🏃 View run x at: http://h/#/r")
        print("Number of tensors : 104")
        print("kept")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "kept\n"


IMPORT_FILTERED = """
import os, sys
from convert import quiet

quiet.set_environment()
quiet.install()
sys.meta_path.insert(0, quiet._QuietImport("noisy_native"))
sys.path.insert(0, sys.argv[1])
import noisy_native  # writes to descriptor 2 as TensorFlow's C++ code does
os.write(2, b"after the import\\n")
"""
NOISY_NATIVE = r"""
import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"I0000 00:00:1795833186.239843   21126 port.cc:153] oneDNN custom operations are on. You may see\n")
os.write(2, b"E0000 00:00:1795833186.2 21126 cuda.cc:1] a real error\n")
os.write(2, b"I0000 00:00:17958 21126 port.cc:153] ")
os.write(2, b"oneDNN custom operations are on, written in two pieces\nspinner\r")
"""


def test_tensorflow_style_import_noise_is_dropped_from_the_descriptor(tmp_path):
    (tmp_path / "noisy_native.py").write_text(textwrap.dedent(NOISY_NATIVE))
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_FILTERED, str(tmp_path)], capture_output=True, check=True
    )
    assert done.stderr == (
        b"E0000 00:00:1795833186.2 21126 cuda.cc:1] a real error\nspinner\rafter the import\n"
    ), done.stderr


def test_importing_tensorflow_through_the_converter_prints_nothing():
    script = "import sys; from convert import cli; cli.quiet.install(); import tensorflow; print('ok')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout == "ok\n" and done.stderr == "", done.stderr

"""Settings: sizing to the container (threads and workers follow the cgroup CPU quota, not the host's core
count), defaults, the shutdown budget, on/off switches, and bad values named in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from function.lifecycle import LOG_FLUSH_RESERVE_S, SIGKILL_MARGIN_S, BudgetTooSmall, Shutdown
from function.settings import DRAIN_S_STANDALONE, BadSetting, Settings, available_cpus

HOST_CPUS = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU still needs one thread
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, HOST_CPUS),  # no quota: the CPUs this process may run on
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, HOST_CPUS),
        ({}, HOST_CPUS),  # no cgroup files at all
    ],
)
def test_cpus_follow_the_cgroup_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert available_cpus(tmp_path) == expected


def test_a_quota_above_the_host_is_capped_by_the_cpus_we_may_run_on(tmp_path):
    (tmp_path / "cpu.max").write_text(f"{(HOST_CPUS + 3) * 100000} 100000\n")
    assert available_cpus(tmp_path) == HOST_CPUS


def test_threads_and_workers_default_to_the_cpus_and_can_be_set():
    defaults = Settings.from_env({})
    assert defaults.threads == available_cpus()
    assert defaults.workers == available_cpus() + 1  # one spare, so a core never idles on the GIL
    chosen = Settings.from_env({"THREADS": "3", "WORKERS": "5"})
    assert (chosen.threads, chosen.workers) == (3, 5)


def test_shutdown_drains_only_off_knative_and_its_parts_fit_the_grace_period():
    assert Settings.from_env({"K_SERVICE": "fish"}).shutdown_drain_s == 0  # the queue-proxy drained already
    assert Settings.from_env({}).shutdown_drain_s == DRAIN_S_STANDALONE
    assert Settings.from_env({"K_SERVICE": "fish", "SHUTDOWN_DRAIN_SECONDS": "2"}).shutdown_drain_s == 2

    shutdown = Shutdown(grace_s=30, drain_s=5)
    assert shutdown.request_timeout_s + shutdown.drain_s + LOG_FLUSH_RESERVE_S + SIGKILL_MARGIN_S == 30
    assert shutdown.log_flush_timeout_s() == LOG_FLUSH_RESERVE_S  # no SIGTERM yet
    with pytest.raises(BudgetTooSmall, match="SHUTDOWN_GRACE_SECONDS=10"):
        Shutdown(grace_s=10, drain_s=5)
    with pytest.raises(BudgetTooSmall, match="0 or more"):
        Shutdown(grace_s=30, drain_s=-1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(on, True) for on in ("on", "true", "1", " ON ", "")],  # empty: the default, as if unset
        *[(off, False) for off in ("off", "False", "0")],
    ],
)
def test_web_ui_is_on_by_default_and_takes_on_off_spellings(value, expected):
    assert Settings.from_env({}).web_ui is True
    assert Settings.from_env({"WEB_UI": value}).web_ui is expected


def test_onnxruntime_spinning_is_off_unless_asked_for():
    assert Settings.from_env({}).ort_spinning is False
    assert Settings.from_env({"ORT_SPINNING": "on"}).ort_spinning is True


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("WEB_UI", "maybe", r"WEB_UI must be on or off \(or true/false, 1/0\), not 'maybe'"),
        ("PORT", "http", r"PORT must be a whole number, 0 or more, not 'http'"),
        ("MAX_UPLOAD_BYTES", "-1", r"MAX_UPLOAD_BYTES must be a whole number, 0 or more, not '-1'"),
        ("MAX_UPLOAD_BYTES", "10MB", r"MAX_UPLOAD_BYTES must be a whole number"),
        ("SHED_DELAY_SECONDS", "1s", r"SHED_DELAY_SECONDS must be a number of seconds, 0 or more, not '1s'"),
        ("BODY_IDLE_TIMEOUT_SECONDS", "nan", r"BODY_IDLE_TIMEOUT_SECONDS must be a number of seconds"),
        ("SHUTDOWN_DRAIN_SECONDS", "-2", r"SHUTDOWN_DRAIN_SECONDS must be a number of seconds"),
    ],
)
def test_a_bad_value_says_which_variable_and_what_it_takes(name, value, says):
    with pytest.raises(BadSetting, match=says):
        Settings.from_env({name: value})


def test_numbers_take_spaces_and_fractions_and_empty_means_the_default():
    chosen = Settings.from_env({"PORT": " 9000 ", "SHED_DELAY_SECONDS": "0.25", "MAX_UPLOAD_BYTES": ""})
    assert (chosen.port, chosen.shed_delay_s, chosen.max_upload_bytes) == (
        9000,
        0.25,
        Settings.max_upload_bytes,
    )


def test_the_process_exits_with_one_line_that_names_the_bad_setting():
    done = subprocess.run(
        [sys.executable, "-m", "function"],
        env={**os.environ, "PORT": "http", "MODEL_URI": "models:/nothing@onnx"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "fish-function: PORT must be a whole number, 0 or more, not 'http'"


def test_a_bad_allowed_prefix_is_one_line_and_exit_1_too():
    done = subprocess.run(
        [sys.executable, "-m", "function"],
        env={
            **os.environ,
            "IMAGE_URL_ALLOWED_PREFIXES": "ftp://files.example/",
            "MODEL_URI": "models:/x@onnx",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "fish-function: IMAGE_URL_ALLOWED_PREFIXES: only http and https URLs with a host are fetched, not "
        "'ftp://files.example/'"
    )


def test_admission_defaults_follow_the_cpus_and_can_be_set():
    defaults = Settings.from_env({})
    assert defaults.max_concurrent_requests == 6 * available_cpus()  # 12 on 2 cores: the knee (8) + half
    assert (defaults.body_idle_timeout_s, defaults.slow_upload_s, defaults.header_timeout_s) == (30, 5, 20)
    chosen = Settings.from_env({"MAX_CONCURRENT_REQUESTS": "3", "BODY_IDLE_TIMEOUT_SECONDS": "10",
                                "SLOW_UPLOAD_SECONDS": "2", "HEADER_TIMEOUT_SECONDS": "5"})  # fmt: skip
    assert (chosen.max_concurrent_requests, chosen.body_idle_timeout_s) == (3, 10)
    assert (chosen.slow_upload_s, chosen.header_timeout_s) == (2, 5)

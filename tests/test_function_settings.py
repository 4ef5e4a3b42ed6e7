"""Sizing to the container: threads and workers follow the cgroup CPU quota, not the host's core count; and the
two onnxruntime sessions that sizing creates give the same answers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from function.classifier import Classifier
from function.lifecycle import LOG_FLUSH_RESERVE_S, SIGKILL_MARGIN_S, BudgetTooSmall, Shutdown
from function.settings import DRAIN_S_STANDALONE, Settings, available_cpus
from tests import tiny_onnx

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


def test_the_alone_and_shared_sessions_answer_alike(tmp_path):
    classifier = Classifier(tiny_onnx.build(tmp_path / "m.onnx"), threads=2)
    images = np.random.default_rng(3).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    for image in images:
        alone, shared = classifier.classify(image, alone=True), classifier.classify(image, alone=False)
        assert alone.class_name == shared.class_name
        assert alone.probabilities == pytest.approx(shared.probabilities, abs=1e-6)


def test_the_alone_session_spans_the_threads_and_the_shared_one_uses_one(tmp_path):
    classifier = Classifier(tiny_onnx.build(tmp_path / "m.onnx"), threads=2)
    assert classifier._solo.get_session_options().intra_op_num_threads == 2
    assert classifier._shared.get_session_options().intra_op_num_threads == 1


def test_a_request_alone_gets_the_wide_session_and_overlapping_ones_the_shared(tmp_path):
    import asyncio
    import io
    import time

    import httpx
    from PIL import Image

    from function.app import create_app

    app = create_app(Settings.from_env({"MODEL_URI": str(tiny_onnx.build(tmp_path / "m.onnx"))}))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, "PNG")
    files = {"file": ("a.png", buffer.getvalue(), "image/png")}
    seen: list[bool] = []

    async def main():
        async with app.lifespan():
            slot = app.state.model_slot
            while not slot.loaded.is_set():
                await asyncio.sleep(0.01)
            real = slot.classifier.classify

            def spy(image, alone=True):
                seen.append(alone)
                time.sleep(0.05)  # long enough for the others to arrive
                return real(image, alone)

            slot.classifier.classify = spy
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
                assert (await client.post("/predict", files=files)).status_code == 200
                answers = await asyncio.gather(*[client.post("/predict", files=files) for _ in range(4)])
                assert [a.status_code for a in answers] == [200] * 4

    asyncio.run(main())
    assert seen[0] is True and seen[1:].count(False) >= 3


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

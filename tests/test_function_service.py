"""The prediction service every door calls, on a tiny model, with a log that keeps its rows in a list (a unit
test of one module; the real PostgreSQL log is tested in test_function_log and through the process)."""

from __future__ import annotations

import asyncio
import hashlib
import io

import pytest
from PIL import Image

from function.inference import images
from function.inference.outcome import ParameterOutOfRange, RequestContext
from function.inference.service import PredictionService
from function.model.classifier import Classifier
from function.model.slot import ModelNotReady, ModelSlot
from function.model.source import ModelSource
from function.settings import Settings
from tests import tiny_onnx


class ListLog:
    def __init__(self):
        self.rows = []

    def record(self, row) -> None:
        self.rows.append(row)


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (1, 2, 3)).save(buffer, "JPEG")
    return buffer.getvalue()[:400]


@pytest.fixture
def served(tmp_path):
    path = tiny_onnx.build(tmp_path / "tiny.onnx")
    slot = ModelSlot(Classifier(path, threads=2), ModelSource(path, "models:/tiny@onnx", "tiny", "4", "onnx"))
    settings = Settings(max_upload_bytes=5_000, k_revision="fish-00002", workers=3)
    log = ListLog()
    service = PredictionService(settings, slot, log)
    service.start()
    yield service, log
    service.stop()


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_prediction_is_answered_and_logged_with_its_context(served):
    service, log = served
    data = png((200, 30, 30))
    outcome = run(service.predict(data, RequestContext("event", "evt-1", top_k=1)))
    assert outcome.prediction.class_name == "red" and list(outcome.ranked) == ["red"]
    assert len(outcome.prediction.probabilities) == 3  # the log keeps every class, whatever top_k
    (row,) = log.rows
    assert (row.id, row.source, row.request_id) == (outcome.prediction_id, "event", "evt-1")
    assert (row.model_name, row.model_version, row.revision) == ("tiny", "4", "fish-00002")
    assert row.image_sha256 == hashlib.sha256(data).hexdigest() and row.predicted_class == "red"


def test_a_batch_answers_each_item_in_order_and_a_bad_one_does_not_fail_the_others(served):
    service, log = served
    items = [png((200, 30, 30)), b"not an image", png((20, 30, 220)), truncated_jpeg()]
    outcomes = run(service.predict_batch(items, RequestContext("batch")))
    assert outcomes[0].prediction.class_name == "red" and outcomes[2].prediction.class_name == "blue"
    assert isinstance(outcomes[1], images.UnsupportedImage) and isinstance(outcomes[3], images.CorruptImage)
    assert [row.predicted_class for row in log.rows] == ["red", "blue"]
    single = run(service.predict(items[2], RequestContext()))
    assert outcomes[2].prediction.probabilities == pytest.approx(single.prediction.probabilities, abs=1e-6)


@pytest.mark.parametrize("top_k", [0, -1, 4])
def test_top_k_out_of_range_is_refused_before_anything_is_classified(served, top_k):
    service, log = served
    with pytest.raises(ParameterOutOfRange, match="between 1 and 3"):
        run(service.predict(png((1, 2, 3)), RequestContext(top_k=top_k)))
    assert log.rows == []


def test_the_size_limit_is_the_files_own(served):
    service, log = served
    with pytest.raises(images.ImageTooLarge, match="5,000.*MAX_UPLOAD_BYTES"):
        run(service.predict(b"\xff" * 5_001, RequestContext()))
    (refused,) = run(service.predict_batch([b"\xff" * 5_001], RequestContext("batch")))
    assert isinstance(refused, images.ImageTooLarge) and log.rows == []


def test_nothing_is_served_before_the_model_is_loaded(tmp_path):
    service = PredictionService(Settings(), ModelSlot(), ListLog())
    with pytest.raises(ModelNotReady):
        run(service.predict(png((1, 2, 3)), RequestContext()))


def test_a_request_alone_gets_the_wide_session_and_overlapping_ones_the_shared(tmp_path):
    path = tiny_onnx.build(tmp_path / "tiny.onnx")
    seen: list[bool] = []

    class Watched(Classifier):
        def classify(self, image, alone=True):
            seen.append(alone)
            return super().classify(image, alone)

    slot = ModelSlot(Watched(path, threads=2), ModelSource(path, str(path), "tiny", "local", None))
    service = PredictionService(Settings(workers=4), slot, ListLog())
    service.start()

    async def main():
        await service.predict(png((1, 2, 3)), RequestContext())
        # all four are handed to the workers before any of them can finish: the first one alone, three overlapping
        await asyncio.gather(*[service.predict(png((1, 2, 3)), RequestContext()) for _ in range(4)])

    try:
        run(main())
    finally:
        service.stop()
    assert seen[0] is True and sorted(seen[1:]) == [False, False, False, True]


def test_the_loader_builds_the_shared_session_once_the_model_serves(tmp_path):
    """On the loader's thread (one malloc arena for both sessions), after the solo session is ready."""
    path = tiny_onnx.build(tmp_path / "tiny.onnx")
    slot = ModelSlot().start(Settings(model_uri=str(path), threads=2))
    assert slot.loaded.wait(60)
    classifier, _ = slot.get()
    assert classifier.shares_cores

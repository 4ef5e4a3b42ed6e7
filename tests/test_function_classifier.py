"""The classifier on tiny ONNX graphs: the contract check on the file, and its sessions and batch run agreeing."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from function.model.classifier import Classifier, ModelInvalid
from tests import tiny_onnx

IMAGES = np.random.default_rng(3).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)


def test_the_alone_and_shared_sessions_and_a_batch_run_answer_alike(tmp_path):
    classifier = Classifier(tiny_onnx.build(tmp_path / "m.onnx"), threads=2)
    batch = classifier.classify_batch(IMAGES)
    for image, in_batch in zip(IMAGES, batch, strict=True):
        alone, shared = classifier.classify(image, alone=True), classifier.classify(image, alone=False)
        assert alone.class_name == shared.class_name == in_batch.class_name
        assert alone.probabilities == pytest.approx(shared.probabilities, abs=1e-6)
        assert alone.probabilities == pytest.approx(in_batch.probabilities, abs=1e-6)


def test_the_shared_session_is_built_when_requests_first_overlap_not_at_load(tmp_path):
    """A cold start's first request is alone: a second session built at load would only slow the start. The
    first overlapping request builds it, and the ones that overlap it wait for it rather than pile onto the solo
    session (whose arena would keep the memory of several runs at once)."""
    path = tiny_onnx.build(tmp_path / "m.onnx")
    classifier = Classifier(path, threads=2)
    solo_runs = []

    class Watched:
        def __init__(self, session):
            self.session = session

        def run(self, *args):
            solo_runs.append(args)
            return self.session.run(*args)

    classifier._solo = classifier._shared = Watched(classifier._solo)
    alone = classifier.classify(IMAGES[0], alone=True)
    assert not classifier.shares_cores and len(solo_runs) == 1
    with ThreadPoolExecutor(4) as pool:
        overlapping = list(pool.map(lambda image: classifier.classify(image, alone=False), [IMAGES[0]] * 4))
    assert classifier.shares_cores
    assert len(solo_runs) == 1  # none of the overlapping ones ran on the solo session
    assert {each.class_name for each in overlapping} == {alone.class_name}

    one_thread = Classifier(path, threads=1)  # one thread: the solo session is already the shared one
    one_thread.classify(IMAGES[0], alone=False)
    assert not one_thread.shares_cores


def _rewritten(path, edit) -> onnx.ModelProto:
    model = onnx.load(path)
    edit(model)
    return model


def _float_input(model):
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    model.graph.node[0].attribute[0].i = TensorProto.FLOAT


def _no_class_names(model):
    kept = [p for p in model.metadata_props if p.key != "class_names"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)


def _two_class_names(model):
    next(p for p in model.metadata_props if p.key == "class_names").value = json.dumps(["red", "green"])


def _free_height(model):
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "height"


def _renamed_input(model):
    model.graph.input[0].name = "pixels_in"
    model.graph.node[0].input[0] = "pixels_in"


BROKEN = [
    ("float input", _float_input, "uint8 tensor named 'image'"),
    ("input not named image", _renamed_input, "uint8 tensor named 'image'"),
    ("no class names", _no_class_names, "no JSON class_names"),
    ("class names do not match the outputs", _two_class_names, "names 2 classes"),
    ("height not fixed", _free_height, "fixed H and W"),
]


@pytest.mark.parametrize(("what", "edit", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_file_that_breaks_the_contract_is_refused_with_the_reason(tmp_path, what, edit, reason):
    path = tmp_path / "broken.onnx"
    onnx.save(_rewritten(tiny_onnx.build(tmp_path / "m.onnx"), edit), path)
    with pytest.raises(ModelInvalid, match=reason):
        Classifier(path, threads=1)


def test_a_file_onnxruntime_cannot_load_is_refused(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelInvalid, match="onnxruntime cannot load garbage.onnx"):
        Classifier(path, threads=1)


def test_the_contract_check_accepts_the_contract(tmp_path):
    card = Classifier(tiny_onnx.build(tmp_path / "m.onnx"), threads=1).card
    assert (
        card.class_names == tuple(tiny_onnx.CLASSES)
        and card.input_size == (8, 8)
        and card.source_version == "7"
    )


def _cpu_seconds_for_runs_with_gaps(classifier: Classifier, runs: int = 40) -> float:
    """Process CPU for runs one at a time with 5 ms between them, as a pod with one user sees them."""
    image = np.random.default_rng(1).integers(0, 256, (*classifier.card.input_size, 3), dtype=np.uint8)
    started = time.process_time()
    for _ in range(runs):
        classifier.classify(image)
        time.sleep(0.005)
    return time.process_time() - started


def test_the_intra_op_threads_sleep_between_runs_unless_spinning_is_asked_for(tmp_path):
    """By default the solo session's pool does not busy-wait after a run (its spin is charged to the pod's CPU
    quota). Held against the same model with spinning on, in the same process: on 2 cores the spinning pool
    took 6-10x the CPU of the sleeping one; the test asks for half."""
    path = tiny_onnx.build(tmp_path / "conv.onnx", size=64, filters=32)
    sleeping = min(_cpu_seconds_for_runs_with_gaps(Classifier(path, threads=2)) for _ in range(2))
    spinning = min(
        _cpu_seconds_for_runs_with_gaps(Classifier(path, threads=2, spinning=True)) for _ in range(2)
    )
    assert sleeping < spinning / 2, (sleeping, spinning)

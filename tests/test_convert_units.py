"""Fast unit tests of the converter's pure pieces (no MLflow, no TensorFlow)."""

import numpy as np
import pytest

from convert import parity, samples, scaling_gate
from convert.cli import parse_args
from convert.errors import InvalidInput
from convert.registry import parse_class_indices


def test_class_indices_are_ordered_by_index():
    assert parse_class_indices('{"trout": 2, "bream": 0, "sprat": 1}', "x") == ["bream", "sprat", "trout"]


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 0, "b": 2}',
        '{"a": 1}',
        '{"a": 0, "b": 0}',
        "[]",
        "{}",
        "not json",
        '{"a": "0"}',
        '{"a": 0, "b": "1"}',
        '{"a": false}',
    ],
)
def test_bad_class_indices_are_refused_with_a_reason(text):
    with pytest.raises(InvalidInput, match="x") as refused:
        parse_class_indices(text, "x")
    assert refused.type is InvalidInput and refused.value.exit_code == 2  # a bad file, not a missing one


def test_split_is_disjoint_and_covers_everything():
    images = np.arange(10)
    calibration, heldout = samples.split(images)
    assert sorted([*calibration, *heldout]) == list(range(10))
    assert set(calibration).isdisjoint(heldout) and len(calibration) == 4


def test_generated_images_vary():
    images = samples.generated(4, (16, 24))
    assert images.shape == (4, 16, 24, 3) and images.dtype == np.uint8
    assert len({img.tobytes() for img in images}) == 4 and images.std() > 20


def test_parity_report_fails_on_difference_or_top1_mismatch():
    ref = np.array([[0.6, 0.4], [0.2, 0.8]], dtype=np.float32)
    assert parity.compare(ref, ref + 1e-6, 1e-4).passed
    assert not parity.compare(ref, ref + 1e-3, 1e-4).passed
    flipped = parity.compare(ref, np.array([[0.45, 0.55], [0.2, 0.8]]), 0.16)  # within 0.16, top-1 swapped
    assert not flipped.passed and flipped.top1_mismatches == 1 and flipped.top1_near_ties == 0


def test_parity_forgives_a_swapped_near_tie_only():
    """Where the reference's own top two are closer than the tolerance, their order is the reference's rounding
    (a mixed_float16 MobileNetV2 and its float32 twin swap such pairs): reported, not failed. A swap of a clear
    winner, or a near tie beyond the tolerance, still fails."""
    ref = np.array([[0.51, 0.49], [0.2, 0.8]], dtype=np.float32)
    swapped_tie = parity.compare(ref, np.array([[0.49, 0.51], [0.2, 0.8]]), 0.05)
    assert swapped_tie.passed and swapped_tie.top1_mismatches == swapped_tie.top1_near_ties == 1
    assert not parity.compare(ref, np.array([[0.49, 0.51], [0.2, 0.8]]), 0.01).passed
    assert not parity.compare(
        ref, np.array([[0.51, 0.49], [0.51, 0.49]]), 0.05
    ).passed  # clear winner swapped


def test_sample_loading_fixes_orientation_and_mode(tmp_path):
    from PIL import Image

    image = Image.new("L", (40, 20), 0)  # greyscale, landscape: left half black, right half white
    image.paste(255, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise: the left half ends up on top
    image.save(tmp_path / "a.jpg", exif=exif)
    (loaded,) = samples.load(samples.image_files(tmp_path), (8, 4))
    assert loaded.shape == (8, 4, 3)
    assert loaded[:3].mean() < 30 and loaded[5:].mean() > 225


def test_an_unreadable_sample_is_exit_2_naming_the_file(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.raises(InvalidInput, match="broken.jpg") as refused:
        samples.load(samples.image_files(tmp_path), (8, 8))
    assert refused.value.exit_code == 2


def test_check_images_say_where_they_came_from(tmp_path):
    from PIL import Image

    assert samples.check_images(None, (8, 8)).origin == f"{samples.GENERATED_IMAGES} generated images"
    Image.new("RGB", (10, 10), (1, 2, 3)).save(tmp_path / "a.png")
    found = samples.check_images(tmp_path, (8, 8))
    assert found.origin == "1 sample images" and found.pixels.shape == (1, 8, 8, 3)


def test_samples_in_class_folders_are_labelled_by_folder(tmp_path):
    from PIL import Image

    for folder, name in [
        ("black_sea_sprat", "a.png"),
        ("Gilt-Head Bream", "b.png"),
        ("black_sea_sprat", "c.png"),
    ]:
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / folder / name)
    found = samples.check_images(tmp_path, (4, 4), ["Gilt-Head Bream", "Black Sea Sprat"])
    assert found.labels.tolist() == [0, 1, 1]  # sorted paths: Gilt-Head Bream/b, black_sea_sprat/a, .../c
    # a folder that names no class, or files outside class folders: no labels, no guessing
    assert samples.check_images(tmp_path, (4, 4), ["Gilt-Head Bream", "Trout"]).labels is None
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    assert samples.check_images(tmp_path, (4, 4), ["Gilt-Head Bream", "Black Sea Sprat"]).labels is None


def test_chance_ceiling_shrinks_with_more_images():
    assert scaling_gate.chance_ceiling(9, 360) == pytest.approx(1 / 9 + 3 * (1 / 9 * 8 / 9 / 360) ** 0.5)
    assert scaling_gate.chance_ceiling(9, 40) > scaling_gate.chance_ceiling(9, 360) > 1 / 9


def test_distinct_modes_try_each_computation_once():
    assert "tf" not in scaling_gate._distinct_modes("symmetric")
    assert set(scaling_gate._distinct_modes("unit")) == {"symmetric", "torch", "caffe", "none"}


@pytest.mark.parametrize(
    ("text", "size"),
    [("224x224", (224, 224)), ("96", (96, 96)), ("64X128", (64, 128)), ("64x", None), ("0x5", None)],
)
def test_input_size_is_h_by_w(text, size, capsys):
    if size is None:
        with pytest.raises(SystemExit) as refused:
            parse_args(["--input-size", text])
        assert refused.value.code == 2 and "HxW" in capsys.readouterr().err
    else:
        assert parse_args(["--input-size", text])[0].input_size == size


def test_failure_text_is_never_console_markup():
    """A shape like [None, 64, 64, 1] once vanished from the message as rich markup."""
    import io

    from rich.console import Console

    from convert.cli import _report_failure

    out = io.StringIO()
    _report_failure(InvalidInput("input [None, 64, 64, 1] is [bold]odd"), False, Console(file=out, width=200))
    assert "input [None, 64, 64, 1] is [bold]odd" in out.getvalue()

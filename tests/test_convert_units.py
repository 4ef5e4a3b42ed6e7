"""Fast unit tests of the converter's pure pieces (no MLflow, no TensorFlow)."""

import numpy as np
import pytest

from convert import export, parity, samples
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


@pytest.mark.parametrize(("scaling", "low", "high"), [("unit", 0, 1), ("symmetric", -1, 1), ("none", 0, 255)])
def test_scalings_map_the_pixel_range(scaling, low, high):
    pixels = np.array([0, 255], dtype=np.uint8)
    np.testing.assert_allclose(export.scale_images(pixels, scaling), [low, high], atol=1e-6)


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
    flipped = parity.compare(ref, np.array([[0.49995, 0.50005], [0.2, 0.8]]), 1.0)
    assert not flipped.passed and flipped.top1_mismatches == 1


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

"""Reliability catalogue, group "images": image files and what a Dataset's load_image returns.

Files go through ``load_image_file`` (errors name the image id and the path); arrays returned by
a Dataset go through the pipeline's ``check_dataset_image`` (converted as load_image_file does,
with a documented InputWarning). No model is built.
"""
import warnings

import numpy as np
import pytest
from PIL import Image

from mrcnn.data.dataset import ImageLoadError, load_image_file, to_rgb_uint8
from mrcnn.data.validation import InputWarning, _WARNED_DATASETS, check_dataset_image

RGB = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)


def _write(path, kind):
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "truncated-png":
        full = path.with_suffix(".full.png")
        Image.fromarray(RGB).save(full)
        path.write_bytes(full.read_bytes()[:40])
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(300))
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "html":
        path.write_text("<html><body>404 Not Found</body></html>")
    elif kind == "truncated-jpeg":
        full = path.with_suffix(".full.jpg")
        Image.fromarray(RGB).save(full, quality=90)
        path.write_bytes(full.read_bytes()[:20])
    elif kind == "directory":
        path.mkdir()
    elif kind == "missing":
        pass
    return path


BAD_FILES = [
    ("zero-byte", "img.png", ImageLoadError),
    ("truncated-png", "img.png", ImageLoadError),
    ("random-bytes", "img.jpg", ImageLoadError),
    ("text", "img.png", ImageLoadError),
    ("html", "img.jpg", ImageLoadError),
    ("truncated-jpeg", "img.jpg", ImageLoadError),
    ("directory", "img.png", ImageLoadError),
    ("missing", "img.png", FileNotFoundError),
]


@pytest.mark.parametrize("kind,name,error", BAD_FILES, ids=[k for k, _, _ in BAD_FILES])
def test_bad_image_file_names_image_id_and_path(tmp_path, kind, name, error):
    path = _write(tmp_path / name, kind)
    with pytest.raises(error) as err:
        load_image_file(path, image_id=17)
    assert "17" in str(err.value) and str(path) in str(err.value)


def _png(tmp_path, array, mode=None):
    path = tmp_path / "img.png"
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(path)
    return path


GOOD_FILES = [
    ("gray", lambda: RGB[..., 0], lambda a: np.stack([a] * 3, -1)),
    ("rgba", lambda: np.concatenate([RGB, np.full(RGB.shape[:2] + (1,), 9, np.uint8)], -1),
     lambda a: a[..., :3]),
    # 16-bit: scaled by the image maximum (documented rule of to_rgb_uint8)
    ("gray16", lambda: (RGB[..., 0].astype(np.uint16) * 257),
     lambda a: np.stack([np.rint(a * (255.0 / a.max())).astype(np.uint8)] * 3, -1)),
    ("bilevel", lambda: RGB[..., 0] > 127,
     lambda a: np.stack([a.astype(np.uint8) * 255] * 3, -1)),
]


@pytest.mark.parametrize("kind,make,expected", GOOD_FILES, ids=[k for k, _, _ in GOOD_FILES])
def test_awkward_image_file_converts_to_its_uint8_rgb_equivalent(tmp_path, kind, make, expected):
    array = make()
    loaded = load_image_file(_png(tmp_path, array))
    assert loaded.dtype == np.uint8 and loaded.shape == RGB.shape[:2] + (3,)
    np.testing.assert_array_equal(loaded, expected(array))


class _Returns:
    """A stand-in Dataset class per case, so the once-per-class warning fires for each case."""


def _fresh_dataset():
    cls = type("DatasetReturning", (_Returns,), {})
    _WARNED_DATASETS.discard(cls)
    return cls()


CONVERTED = [
    ("float01", lambda: RGB / 255.0),                        # trained on a black image before
    ("float32_01", lambda: (RGB / 255.0).astype(np.float32)),
    ("float0255", lambda: RGB.astype(np.float64)),
    ("uint16", lambda: RGB.astype(np.uint16) * 257),
    ("int64_8bit", lambda: RGB.astype(np.int64)),
    ("bool", lambda: RGB > 127),
    ("gray2d", lambda: RGB[..., 0]),
    ("gray1ch", lambda: RGB[..., :1]),
    ("rgba", lambda: np.concatenate([RGB, RGB[..., :1]], -1)),
]


@pytest.mark.parametrize("kind,make", CONVERTED, ids=[k for k, _ in CONVERTED])
def test_dataset_image_of_another_dtype_or_layout_is_converted_like_load_image(kind, make):
    array = make()
    dataset = _fresh_dataset()
    expected = to_rgb_uint8(array)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = check_dataset_image(dataset, 3, array, "image 3 (test)")
    assert out.dtype == np.uint8 and out.shape == RGB.shape[:2] + (3,)
    np.testing.assert_array_equal(out, expected)
    if array.dtype != np.uint8:
        assert any(issubclass(w.category, InputWarning) and "image 3" in str(w.message)
                   for w in caught)
    if kind.startswith("float01"):
        np.testing.assert_array_equal(out, RGB)  # the uint8 equivalent, not a black image


def test_dataset_image_with_nan_is_zeroed_with_a_warning():
    array = RGB / 255.0
    array[0, 0, 0] = np.nan
    with pytest.warns(InputWarning, match="NaN"):
        out = check_dataset_image(_fresh_dataset(), 5, array, "image 5 (test)")
    assert out[0, 0, 0] == 0


BAD_ARRAYS = [
    ("none", lambda: None, TypeError),
    ("path-string", lambda: "img.png", TypeError),
    ("object", lambda: np.array([[object()] * 3] * 3), TypeError),
    ("complex", lambda: RGB.astype(np.complex64), TypeError),
    ("1x1", lambda: RGB[:1, :1], ValueError),
    ("1xN", lambda: RGB[:1], ValueError),
    ("4d", lambda: RGB[None], ValueError),
    ("5-channels", lambda: np.zeros((6, 7, 5), np.uint8), ValueError),
    ("empty", lambda: np.zeros((0, 7, 3), np.uint8), ValueError),
]


@pytest.mark.parametrize("kind,make,error", BAD_ARRAYS, ids=[k for k, _, _ in BAD_ARRAYS])
def test_unusable_dataset_image_names_the_image(kind, make, error):
    with pytest.raises(error) as err:
        check_dataset_image(_fresh_dataset(), 9, make(), "image 9 (source 'x', path 'p.png')")
    assert "image 9" in str(err.value)

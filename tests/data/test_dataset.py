"""Tests for mrcnn/data/dataset.py: the classic Dataset bookkeeping and the image reader."""
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrcnn.data.dataset import Dataset, ImageLoadError, load_image_file, to_rgb_uint8


def _two_source_dataset():
    ds = Dataset()
    ds.add_class("shapes", 1, "square")
    ds.add_class("shapes", 2, "circle")
    ds.add_class("coco", 1, "person")
    ds.add_class("coco", 18, "dog,domestic dog")
    ds.add_class("shapes", 1, "square")  # duplicate: ignored
    ds.add_image("shapes", image_id=10, path="/nowhere/a.png", width=64, height=48)
    ds.add_image("coco", image_id=555, path="/nowhere/b.jpg")
    ds.add_image("shapes", image_id=11, path="/nowhere/c.png")
    return ds


# ---------------------------------------------------------------------- bookkeeping
def test_prepare_two_sources_builds_classic_maps():
    ds = _two_source_dataset()
    ds.prepare()
    assert ds.num_classes == 5
    np.testing.assert_array_equal(ds.class_ids, [0, 1, 2, 3, 4])
    assert ds.class_names == ["BG", "square", "circle", "person", "dog"]
    assert ds.num_images == 3
    np.testing.assert_array_equal(ds.image_ids, [0, 1, 2])
    assert ds.class_from_source_map == {
        ".0": 0, "shapes.1": 1, "shapes.2": 2, "coco.1": 3, "coco.18": 4}
    assert ds.image_from_source_map == {"shapes.10": 0, "coco.555": 1, "shapes.11": 2}
    assert ds.sources == ["", "coco", "shapes"]
    assert ds.source_class_ids == {"": [0], "coco": [0, 3, 4], "shapes": [0, 1, 2]}
    # Extra add_image kwargs are kept.
    assert ds.image_info[0]["width"] == 64 and ds.image_info[0]["height"] == 48
    assert ds.image_info[1] == {"id": 555, "source": "coco", "path": "/nowhere/b.jpg"}
    assert ds.class_info[0] == {"source": "", "id": 0, "name": "BG"}


def test_duplicate_class_with_other_name_is_ignored_with_warning(caplog):
    ds = Dataset()
    ds.add_class("s", 1, "cat")
    with caplog.at_level(logging.WARNING, logger="mrcnn.data.dataset"):
        ds.add_class("s", 1, "kitten")
    assert len(ds.class_info) == 2 and ds.class_info[1]["name"] == "cat"
    assert "kitten" in caplog.text


def test_add_class_rejects_dot_in_source():
    ds = Dataset()
    with pytest.raises(ValueError, match=r"my\.data"):
        ds.add_class("my.data", 1, "thing")
    assert len(ds.class_info) == 1


def test_map_and_get_source_class_id():
    ds = _two_source_dataset()
    ds.prepare()
    assert ds.map_source_class_id("coco.18") == 4
    assert ds.map_source_class_id("shapes.2") == 2
    assert ds.get_source_class_id(4, "coco") == 18
    assert ds.get_source_class_id(np.int64(1), "shapes") == 1
    assert ds.get_source_class_id(0, "") == 0
    with pytest.raises(ValueError, match="belongs to source 'coco'"):
        ds.get_source_class_id(4, "shapes")
    with pytest.raises(ValueError, match="out of range"):
        ds.get_source_class_id(5, "coco")
    with pytest.raises(KeyError, match="coco.99"):
        ds.map_source_class_id("coco.99")


def test_image_reference_link_and_id_checks():
    ds = _two_source_dataset()
    ds.prepare()
    assert ds.image_reference(0) == ""
    assert ds.source_image_link(1) == "/nowhere/b.jpg"
    assert ds.source_image_link(np.int32(2)) == "/nowhere/c.png"
    with pytest.raises(ValueError, match="out of range"):
        ds.source_image_link(3)
    with pytest.raises(ValueError, match="integer"):
        ds.source_image_link("0")


def test_use_before_prepare_is_a_clear_error():
    ds = _two_source_dataset()
    with pytest.raises(RuntimeError, match="prepare"):
        ds.image_ids
    with pytest.raises(RuntimeError, match="prepare"):
        ds.load_image(0)
    with pytest.raises(AttributeError, match="prepare"):
        ds.num_classes
    assert not hasattr(ds, "class_names")
    # Classic attributes that exist before prepare().
    assert ds.source_class_ids == {}
    assert len(ds.image_info) == 3


def test_adding_after_prepare_requires_prepare_again():
    ds = _two_source_dataset()
    ds.prepare()
    ds.add_image("shapes", image_id=12, path="/nowhere/d.png")
    with pytest.raises(RuntimeError, match="prepare"):
        ds.image_ids
    ds.prepare()
    np.testing.assert_array_equal(ds.image_ids, [0, 1, 2, 3])


def test_empty_dataset_prepares():
    ds = Dataset(class_map={"x": 1})
    ds.prepare(class_map=None)
    assert ds.num_classes == 1 and ds.class_names == ["BG"]
    assert ds.num_images == 0 and ds.image_ids.shape == (0,)
    assert ds.sources == [""] and ds.source_class_ids == {"": [0]}


def test_base_load_mask_returns_empty_arrays_and_warns(caplog):
    ds = _two_source_dataset()
    ds.prepare()
    with caplog.at_level(logging.WARNING, logger="mrcnn.data.dataset"):
        masks, class_ids = ds.load_mask(0)
    assert masks.shape == (0, 0, 0) and masks.dtype == np.bool_
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32
    assert "load_mask" in caplog.text


def test_subclass_override_and_pickle_roundtrip():
    import pickle

    class Squares(Dataset):
        def load_mask(self, image_id):
            m = np.zeros((4, 4, 1), bool)
            m[1:3, 1:3, 0] = True
            return m, np.array([self.map_source_class_id("sq.1")], np.int32)

    ds = Squares()
    ds.add_class("sq", 1, "square")
    ds.add_image("sq", 0, "/x.png")
    ds.prepare()
    masks, ids = ds.load_mask(0)
    assert masks.sum() == 4 and ids.tolist() == [1]
    # Unprepared and prepared instances survive pickling (multiprocessing data loaders).
    assert pickle.loads(pickle.dumps(Dataset())).class_info[0]["name"] == "BG"
    prepared = _two_source_dataset()
    prepared.prepare()
    back = pickle.loads(pickle.dumps(prepared))
    np.testing.assert_array_equal(back.image_ids, [0, 1, 2])
    assert back.map_source_class_id("coco.18") == 4


# ---------------------------------------------------------------------- image reading
def _dataset_with(path):
    ds = Dataset()
    ds.add_class("t", 1, "thing")
    ds.add_image("t", image_id="img-a", path=str(path))
    ds.prepare()
    return ds


def _rgb_pattern(h=8, w=10):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([y * 20, x * 20, (y + x) * 10], axis=-1).astype(np.uint8)


def test_load_rgb_png_is_exact(tmp_path):
    rgb = _rgb_pattern()
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    out = _dataset_with(path).load_image(0)
    assert out.dtype == np.uint8 and out.shape == (8, 10, 3)
    np.testing.assert_array_equal(out, rgb)


def test_load_grayscale_png_replicates_channels(tmp_path):
    gray = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(gray, mode="L").save(path)
    out = _dataset_with(path).load_image(0)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_load_rgba_png_drops_alpha(tmp_path):
    rgb = _rgb_pattern()
    alpha = np.zeros(rgb.shape[:2], np.uint8)  # fully transparent: must not blacken the image
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
    out = load_image_file(path)
    assert out.shape == (8, 10, 3)
    np.testing.assert_array_equal(out, rgb)


def test_load_palette_png_expands_palette(tmp_path):
    idx = np.zeros((5, 7), np.uint8)
    idx[1:3, 2:5] = 1
    idx[4, :] = 2
    im = Image.fromarray(idx, mode="P")
    palette = [0, 0, 0, 255, 0, 0, 10, 200, 30] + [0] * (256 * 3 - 9)
    im.putpalette(palette)
    im.info["transparency"] = 0
    path = tmp_path / "pal.png"
    im.save(path)
    assert Image.open(path).mode == "P"
    out = load_image_file(path, image_id=7)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[2, 3], [255, 0, 0])
    np.testing.assert_array_equal(out[4, 6], [10, 200, 30])


def test_load_16bit_png_full_range_divides_by_257(tmp_path):
    a = np.array([[0, 257, 1000], [32896, 65278, 65535]], np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    out = load_image_file(path)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    # max 65535 -> factor 255/65535 == 1/257
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 4], [128, 254, 255]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_load_16bit_png_low_dynamic_range_is_stretched(tmp_path):
    a = np.array([[0, 100, 200], [500, 800, 1000]], np.uint16)
    path = tmp_path / "micro16.png"
    Image.fromarray(a).save(path)
    out = load_image_file(path)
    # [0, 1000] -> [0, 255]: 25.5 -> 26 and 127.5 -> 128 (round half to even)
    np.testing.assert_array_equal(out[..., 1], [[0, 26, 51], [128, 204, 255]])


def test_load_16bit_png_with_8bit_values_is_unchanged(tmp_path):
    a = np.array([[0, 7, 255]], np.uint16)
    path = tmp_path / "small16.png"
    Image.fromarray(a).save(path)
    np.testing.assert_array_equal(load_image_file(path)[..., 0], [[0, 7, 255]])


def test_load_float_tiff_in_unit_range(tmp_path):
    f = np.array([[0.0, 0.5], [0.25, 1.0]], np.float32)
    path = tmp_path / "f.tiff"
    Image.fromarray(f).save(path)
    out = load_image_file(path)
    np.testing.assert_array_equal(out[..., 0], [[0, 128], [64, 255]])


def test_load_jpeg(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = [200, 40, 40]
    rgb[:, 8:] = [30, 30, 220]
    path = tmp_path / "x.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    out = load_image_file(path)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    # Lossy: compare the centre of each flat half.
    assert np.abs(out[4:12, 1:5].astype(int) - [200, 40, 40]).max() <= 12
    assert np.abs(out[4:12, 11:15].astype(int) - [30, 30, 220]).max() <= 12


def test_missing_file_names_id_and_path(tmp_path):
    path = tmp_path / "absent.png"
    ds = _dataset_with(path)
    with pytest.raises(FileNotFoundError) as err:
        ds.load_image(0)
    assert "image 0" in str(err.value) and str(path) in str(err.value)


def test_corrupt_file_names_id_and_path(tmp_path):
    path = tmp_path / "broken.png"
    rng = np.random.default_rng(0)
    path.write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    ds = _dataset_with(path)
    with pytest.raises(ImageLoadError) as err:
        ds.load_image(0)
    assert isinstance(err.value, ValueError)
    assert str(path) in str(err.value) and "image 0" in str(err.value)


def test_truncated_png_is_a_load_error(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated.png"):
        load_image_file(bad)


def test_directory_path_is_a_load_error(tmp_path):
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image_file(tmp_path, image_id=3)


def test_load_image_rejects_bad_image_id(tmp_path):
    ds = _dataset_with(tmp_path / "a.png")
    with pytest.raises(ValueError, match="out of range"):
        ds.load_image(1)


# ---------------------------------------------------------------------- to_rgb_uint8 edge cases
def test_to_rgb_uint8_layouts_and_dtypes():
    np.testing.assert_array_equal(
        to_rgb_uint8(np.array([[True, False]]))[..., 1], [[255, 0]])
    gray_alpha = np.dstack([np.full((2, 2), 9, np.uint8), np.full((2, 2), 255, np.uint8)])
    assert (to_rgb_uint8(gray_alpha) == 9).all()
    # Alpha does not take part in the scaling of a 16-bit RGBA image.
    rgba16 = np.zeros((1, 2, 4), np.uint16)
    rgba16[0, 1, :3] = 1000
    rgba16[..., 3] = 65535
    np.testing.assert_array_equal(to_rgb_uint8(rgba16)[0, :, 0], [0, 255])
    # Negative ints are clipped; float NaN becomes 0; float 0-255 kept.
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[-5, 300]], np.int32))[..., 0], [[0, 255]])
    np.testing.assert_array_equal(
        to_rgb_uint8(np.array([[np.nan, 1.0, 0.5]]))[..., 0], [[0, 255, 128]])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[3.0, 200.4]]))[..., 0], [[3, 200]])
    with pytest.raises(ImageLoadError, match="shape"):
        to_rgb_uint8(np.zeros((2, 2, 5), np.uint8), source="x.tif")
    with pytest.raises(ImageLoadError, match="empty"):
        to_rgb_uint8(np.zeros((0, 4), np.uint8))


# ---------------------------------------------------------------------- real data
def _nucleus_dir():
    env = os.environ.get("MRCNN_NUCLEUS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nucleus"


def test_real_nucleus_rgba_image_loads_as_rgb():
    train = _nucleus_dir() / "stage1_train"
    if not train.is_dir():
        pytest.skip(f"nucleus data not found at {train}")
    sample = sorted(p.name for p in train.iterdir() if p.is_dir())[0]
    path = train / sample / "images" / f"{sample}.png"
    assert Image.open(path).mode == "RGBA"
    ds = Dataset()
    ds.add_class("nucleus", 1, "nucleus")
    ds.add_image("nucleus", image_id=sample, path=str(path))
    ds.prepare()
    out = ds.load_image(0)
    raw = np.asarray(Image.open(path))
    assert out.ndim == 3 and out.shape == raw.shape[:2] + (3,) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, raw[..., :3])

"""Tests for mrcnn/data/augment.py: albumentations, imgaug-like and callable augmenters keep
masks aligned with the image; the clear error when imgaug cannot be imported."""
import builtins
import sys

import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.data.augment import MASK_AUGMENTERS, Augmenter, make_augmenter
from mrcnn.data.dataset import Dataset
from mrcnn.data.pipeline import load_image_gt

RED = (220, 20, 20)
BLUE = (20, 20, 220)


def _scene():
    """48x64 grey image with a red rectangle (left) and a blue one (right, lower)."""
    image = np.full((48, 64, 3), 90, dtype=np.uint8)
    masks = np.zeros((48, 64, 2), dtype=bool)
    masks[5:20, 3:15, 0] = True
    masks[25:40, 40:60, 1] = True
    image[masks[:, :, 0]] = RED
    image[masks[:, :, 1]] = BLUE
    return image, masks


def _assert_masks_cover_colours(image, masks, colours):
    for i, colour in enumerate(colours):
        assert masks[:, :, i].any()
        covered = image[masks[:, :, i]]
        np.testing.assert_array_equal(covered, np.tile(colour, (covered.shape[0], 1)))
        # And every pixel of that colour belongs to the mask.
        assert np.all(masks[:, :, i][np.all(image == colour, axis=-1)])


# ------------------------------------------------------------------ albumentations
def test_albumentations_horizontal_flip_keeps_masks_aligned():
    import albumentations as A

    image, masks = _scene()
    augment = make_augmenter(A.HorizontalFlip(p=1))
    assert isinstance(augment, Augmenter) and augment.kind == "albumentations"
    out_image, out_masks = augment(image, masks, rng=np.random.default_rng(0))
    assert out_image.dtype == np.uint8 and out_image.shape == image.shape
    assert out_masks.dtype == bool and out_masks.shape == masks.shape
    np.testing.assert_array_equal(out_masks, masks[:, ::-1])
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    _assert_masks_cover_colours(out_image, out_masks, [RED, BLUE])


def test_albumentations_compose_pixel_transforms_leave_masks_and_seed_reproduces():
    import albumentations as A

    image, masks = _scene()
    transform = A.Compose([A.Affine(rotate=(-20, 20), p=1),
                           A.RandomBrightnessContrast(p=1)])
    augment = make_augmenter(transform)
    a = augment(image, masks, rng=np.random.default_rng(7))
    b = augment(image, masks, rng=np.random.default_rng(7))
    c = augment(image, masks, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[1].dtype == bool and a[1].shape == masks.shape
    # Rotation moves the masks; brightness does not make them non-binary or empty.
    assert not np.array_equal(a[1], masks) and a[1][:, :, 0].any() and a[1][:, :, 1].any()


def test_albumentations_with_zero_instances():
    import albumentations as A

    image, _ = _scene()
    masks = np.zeros((48, 64, 0), dtype=bool)
    out_image, out_masks = make_augmenter(A.HorizontalFlip(p=1))(image, masks)
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    assert out_masks.shape == (48, 64, 0) and out_masks.dtype == bool


def test_albumentations_size_change_is_fitted_back_to_the_input_size():
    import albumentations as A

    image, masks = _scene()
    out_image, out_masks = make_augmenter(A.RandomCrop(32, 32, p=1))(image, masks)
    assert out_image.shape == image.shape and out_masks.shape == masks.shape
    # 32 x 32 scaled by 1.5 to 48 x 48, zero padding on the right
    assert not out_image[:, 48:].any() and not out_masks[:, 48:].any()


# ------------------------------------------------------------------ callables
def test_plain_callable_and_callable_with_rng():
    image, masks = _scene()

    def flip_up_down(img, m):
        return img[::-1], m[::-1]

    augment = make_augmenter(flip_up_down)
    assert augment.kind == "callable"
    out_image, out_masks = augment(image, masks, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out_masks, masks[::-1])
    _assert_masks_cover_colours(out_image, out_masks, [RED, BLUE])

    seen = []

    def with_rng(img, m, rng=None):
        seen.append(rng)
        return img, m

    rng = np.random.default_rng(1)
    make_augmenter(with_rng)(image, masks, rng=rng)
    assert seen == [rng]


def test_callable_returning_wrong_masks_is_rejected():
    image, masks = _scene()
    with pytest.raises(ValueError, match="masks of shape"):
        make_augmenter(lambda img, m: (img, m[:, :, :1]))(image, masks)
    with pytest.raises(ValueError, match=r"\(image, masks\)"):
        make_augmenter(lambda img, m: img)(image, masks)


def test_make_augmenter_none_passthrough_and_type_error():
    assert make_augmenter(None) is None
    augment = make_augmenter(lambda img, m: (img, m))
    assert make_augmenter(augment) is augment
    with pytest.raises(TypeError, match="augmentation must be"):
        make_augmenter(42)


# ------------------------------------------------------------------ imgaug-like (classic path)
class Fliplr:
    def apply(self, image):
        return image[:, ::-1].copy()


class Multiply:
    def apply(self, image):
        return (image // 2).astype(image.dtype)


class FakeSequential:
    """Duck-typed stand-in for an imgaug Sequential (to_deterministic / augment_image / hooks)."""

    def __init__(self, children, shrink=False):
        self.children = children
        self.shrink = shrink
        self.deterministic_calls = 0

    def to_deterministic(self):
        self.deterministic_calls += 1
        return self

    def augment_image(self, image, hooks=None):
        for child in self.children:
            if hooks is None or hooks.is_activated([image], augmenter=child, parents=[self],
                                                   default=True):
                image = child.apply(image)
        return image[:-1] if self.shrink else image


def test_imgaug_like_object_uses_classic_path_without_importing_imgaug(monkeypatch):
    real_import = builtins.__import__

    def no_imgaug(name, *args, **kwargs):
        if name.split(".")[0] == "imgaug":
            raise AssertionError("imgaug must not be imported")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "imgaug", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_imgaug)
    image, masks = _scene()
    fake = FakeSequential([Fliplr(), Multiply()])
    augment = make_augmenter(fake)
    assert augment.kind == "imgaug"
    out_image, out_masks = augment(image, masks)
    assert fake.deterministic_calls == 1
    # Image: flipped and darkened; masks: only the geometric Fliplr (in MASK_AUGMENTERS).
    np.testing.assert_array_equal(out_image, image[:, ::-1] // 2)
    np.testing.assert_array_equal(out_masks, masks[:, ::-1])
    assert out_masks.dtype == bool
    assert "Fliplr" in MASK_AUGMENTERS and "Multiply" not in MASK_AUGMENTERS
    # Zero instances: only the image is augmented.
    out_image, out_masks = augment(image, masks[:, :, :0])
    assert out_masks.shape == (48, 64, 0)


def test_imgaug_like_shape_change_is_fitted_back():
    image, masks = _scene()
    out_image, out_masks = make_augmenter(FakeSequential([Fliplr()], shrink=True))(image, masks)
    assert out_image.shape == image.shape and out_masks.shape == masks.shape
    # 47 x 64 fits at scale 1: one zero row is padded at the bottom, every instance survives
    assert not out_image[-1].any() and not out_masks[-1].any()
    np.testing.assert_array_equal(out_masks.any(axis=(0, 1)), masks.any(axis=(0, 1)))


def test_clear_error_when_imgaug_cannot_be_imported(monkeypatch):
    real_import = builtins.__import__

    def broken_imgaug(name, *args, **kwargs):
        if name.split(".")[0] == "imgaug":
            raise AttributeError("`np.sctypes` was removed in the NumPy 2.0 release.")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "imgaug", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken_imgaug)
    # An object whose class lives in the imgaug package needs imgaug.HooksImages.
    RealLooking = type("Fliplr", (FakeSequential,), {"__module__": "imgaug.augmenters.flip"})
    with pytest.raises(ImportError) as info:
        make_augmenter(RealLooking([Fliplr()]))
    message = str(info.value)
    assert "NumPy 2" in message and "albumentations" in message
    assert "A.HorizontalFlip" in message and "np.sctypes" in message


# ------------------------------------------------------------------ through load_image_gt
class _TwoSourceDataset(Dataset):
    """Two images with the same scene, one per source ("a", "b")."""

    def __init__(self):
        super().__init__()
        self.add_class("a", 1, "red")
        self.add_class("b", 1, "blue")
        self.add_image("a", image_id=0, path=None)
        self.add_image("b", image_id=0, path=None)
        self.prepare()

    def load_image(self, image_id):
        return _scene()[0]

    def load_mask(self, image_id):
        return _scene()[1], np.array([1, 1], dtype=np.int32)


class _Cfg(Config):
    NAME = "aug"
    NUM_CLASSES = 3  # BG, a.1, b.1
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    USE_MINI_MASK = False


def test_flip_through_load_image_gt_and_no_augmentation_sources():
    import albumentations as A

    ds = _TwoSourceDataset()
    cfg = _Cfg()
    plain = load_image_gt(ds, cfg, 0, rng=np.random.default_rng(0))
    flip = A.HorizontalFlip(p=1)
    flipped = load_image_gt(ds, cfg, 0, augmentation=flip, rng=np.random.default_rng(0),
                            no_augmentation_sources=["b"])
    kept = load_image_gt(ds, cfg, 1, augmentation=flip, rng=np.random.default_rng(0),
                         no_augmentation_sources=["b"])
    np.testing.assert_array_equal(flipped[0], plain[0][:, ::-1])
    np.testing.assert_array_equal(flipped[4], plain[4][:, ::-1])
    _assert_masks_cover_colours(flipped[0], flipped[4], [RED, BLUE])
    # Boxes follow the flip: x1' = 64 - x2.
    np.testing.assert_array_equal(flipped[3][:, [1, 3]], 64 - plain[3][:, [3, 1]])
    # Source "b" is listed in no_augmentation_sources: unchanged.
    np.testing.assert_array_equal(kept[0], plain[0])
    np.testing.assert_array_equal(kept[4], plain[4])

"""One adapter for image + instance-mask augmentation: albumentations, imgaug or a callable.

:func:`make_augmenter` turns what users pass as ``augmentation=`` into an :class:`Augmenter`, a
callable ``(image [H, W, C] uint8, masks [H, W, N] bool, rng) -> (image, masks)`` that keeps the
masks aligned with the image. Three kinds are accepted:

``albumentations``
    A transform or ``albumentations.Compose`` (2.x API). It is called as
    ``transform(image=image, masks=masks)`` with the masks stacked as one ``[N, H, W]`` uint8 array
    (albumentations 2.x takes a list of 2-D masks or such an array; it returns either a list or an
    array, both are handled). Albumentations decides itself which transforms touch masks (spatial
    ones do, pixel-level ones do not). When ``rng`` is given the transform is re-seeded from it
    before each call (``set_random_seed``), under a lock, so results are reproducible.
``imgaug`` (classic)
    An object with ``to_deterministic`` and ``augment_image`` (duck typing: imgaug is **not**
    imported to recognise it). As the classic code: ``det = augmentation.to_deterministic()``,
    the image goes through ``det.augment_image(image)`` and the masks through
    ``det.augment_image(masks.astype(np.uint8), hooks=...)`` with a hook that only lets the
    geometric augmenters of :data:`MASK_AUGMENTERS` touch the masks. The image shape must not
    change (the classic code asserted it). imgaug draws its randomness from its own state, so
    ``rng`` does not make imgaug runs reproducible.
``callable``
    Any function ``fn(image, masks) -> (image, masks)`` with masks ``[H, W, N]`` bool; it is also
    given ``rng=`` when its signature accepts a parameter of that name.

imgaug and NumPy 2
    imgaug 0.4 (its last release) does not import with NumPy 2: ``import imgaug`` fails inside
    imgaug with ``AttributeError`` (``np.sctypes`` / ``np.bool`` were removed). When an augmenter
    whose class lives in the ``imgaug`` package needs ``imgaug`` (for its ``HooksImages`` class)
    and the import fails, an ``ImportError`` explains this and lists albumentations equivalents
    (:data:`IMGAUG_TO_ALBUMENTATIONS`), e.g. ``iaa.Fliplr(0.5)`` -> ``A.HorizontalFlip(p=0.5)``.
    Other duck-typed objects get a built-in hook object with the ``HooksImages`` interface.

Geometry and size
    Every geometric transform keeps the masks aligned with the image: albumentations moves its
    ``masks`` with the image (nearest-neighbour), imgaug runs the same deterministic augmenter on
    image and masks, with :data:`MASK_AUGMENTERS` naming every geometric imgaug augmenter
    (flips, Rot90, Affine and its Scale/Translate/Rotate/Shear shortcuts, crops and pads,
    piecewise-affine, perspective and elastic warps; the classic whitelist lacked rotations and
    elastic warps, so their masks silently stayed put). Transforms that change the image size
    (``A.RandomScale``, ``A.RandomCrop`` smaller than the image, ``A.LongestMaxSize`` ...) are
    fitted back to the input size (:func:`fit_to_shape`: one scale for image and masks, then
    zero padding at the bottom/right), so the network input keeps its shape. Boxes are not
    augmented: ``load_image_gt`` computes them from the augmented masks, and crowd regions are
    masks (negative class ids) like any other, so they move with the image too.

All adapters check that the masks come back as ``[H, W, N]`` with the same N (instances are
never dropped here; ``load_image_gt`` drops instances whose mask became empty). N = 0 is
supported: the masks are then not passed to the augmenter at all.
"""
import inspect
import logging
import sys
import threading

import numpy as np

__all__ = ["Augmenter", "make_augmenter", "fit_to_shape", "MASK_AUGMENTERS",
           "IMGAUG_TO_ALBUMENTATIONS"]

logger = logging.getLogger(__name__)

# imgaug augmenter class names that may be applied to masks: the geometric ones and the
# containers that hold them (the classic list).
MASK_AUGMENTERS = ("Sequential", "SomeOf", "OneOf", "Sometimes", "Fliplr", "Flipud",
                   "CropAndPad", "Affine", "PiecewiseAffine",
                   # not in the classic list: their masks stayed put while the image moved
                   "Rot90", "Rotate", "ScaleX", "ScaleY", "TranslateX", "TranslateY", "ShearX",
                   "ShearY", "Crop", "Pad", "CropToFixedSize", "PadToFixedSize",
                   "CenterCropToFixedSize", "CenterPadToFixedSize", "KeepSizeByResize",
                   "PerspectiveTransform", "ElasticTransformation", "WithPolarWarping",
                   "Jigsaw")

IMGAUG_TO_ALBUMENTATIONS = {
    "iaa.Sequential([...])": "A.Compose([...])",
    "iaa.Sometimes(p, aug)": "the transform with p=p",
    "iaa.OneOf([...])": "A.OneOf([...])",
    "iaa.SomeOf((0, n), [...])": "A.SomeOf([...], n=n)",
    "iaa.Fliplr(p)": "A.HorizontalFlip(p=p)",
    "iaa.Flipud(p)": "A.VerticalFlip(p=p)",
    "iaa.Rot90(...)": "A.RandomRotate90()",
    "iaa.Affine(rotate=(a, b), scale=(s, t))": "A.Affine(rotate=(a, b), scale=(s, t))",
    "iaa.CropAndPad(percent=...)": "A.CropAndPad(percent=...)",
    "iaa.PiecewiseAffine(...)": "A.PiecewiseAffine(...)",
    "iaa.Multiply((a, b))": "A.MultiplicativeNoise(multiplier=(a, b))",
    "iaa.GaussianBlur(sigma=(a, b))": "A.GaussianBlur(sigma_limit=(a, b))",
    "iaa.LinearContrast(...)": "A.RandomBrightnessContrast(...)",
}

KINDS = ("albumentations", "imgaug", "callable")


def _imgaug_hint():
    pairs = "; ".join(f"{k} -> {v}" for k, v in IMGAUG_TO_ALBUMENTATIONS.items())
    return ("imgaug 0.4 (its last release) is incompatible with NumPy 2 (it uses np.sctypes / "
            "np.bool, removed in NumPy 2), and this package needs NumPy 2. Use albumentations "
            "instead (installed with this package): pass an albumentations transform or "
            "A.Compose([...]) as augmentation=. Equivalents: " + pairs)


def _import_imgaug():
    """The imgaug module, or an ImportError that explains the NumPy 2 incompatibility."""
    module = sys.modules.get("imgaug")
    if module is not None and hasattr(module, "HooksImages"):
        return module
    try:
        import imgaug  # noqa: PLC0415 - optional, known to fail on NumPy 2
    except Exception as exc:  # noqa: BLE001 - imgaug fails with AttributeError, not ImportError
        raise ImportError(f"cannot import imgaug ({type(exc).__name__}: {exc}). "
                          + _imgaug_hint()) from exc
    return imgaug


class _MaskHooks:
    """Minimal object with imgaug's ``HooksImages`` interface: only augmenters whose class name is
    in :data:`MASK_AUGMENTERS` are activated; everything else is left at its default."""

    def is_activated(self, images, augmenter, parents, default):
        return type(augmenter).__name__ in MASK_AUGMENTERS

    def is_propagating(self, images, augmenter, parents, default):
        return default

    def preprocess(self, images, augmenter, parents):
        return images

    def postprocess(self, images, augmenter, parents):
        return images


def _mask_activator(images, augmenter, parents, default):
    return type(augmenter).__name__ in MASK_AUGMENTERS


def _is_imgaug_like(obj):
    return callable(getattr(obj, "to_deterministic", None)) and callable(
        getattr(obj, "augment_image", None))


def _is_albumentations(obj):
    if type(obj).__module__.split(".")[0] == "albumentations":
        return True
    module = sys.modules.get("albumentations")
    if module is None:
        return False
    bases = tuple(getattr(module, name) for name in ("BasicTransform", "BaseCompose")
                  if hasattr(module, name))
    return bool(bases) and isinstance(obj, bases)


def _accepts_rng(fn):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "rng" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def fit_to_shape(image, masks, shape):
    """Scale ``image`` [h, w, C] and ``masks`` [h, w, N] by one factor to fit ``shape`` (H, W),
    then zero-pad at the bottom/right to exactly (H, W).

    The factor is ``min(H / h, W / w)``: the aspect ratio is kept, so a pixel of an object stays
    on the object's mask. Image: bilinear (dtype kept); masks: nearest by pixel centre
    (``cv2.INTER_NEAREST_EXACT``; plain ``INTER_NEAREST`` shifts them by up to a pixel), bool.
    """
    import cv2

    height, width = int(shape[0]), int(shape[1])
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image, masks
    scale = min(height / h, width / w)
    new_h = max(1, min(height, int(round(h * scale))))
    new_w = max(1, min(width, int(round(w * scale))))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    resized = resized.reshape(new_h, new_w, -1)
    out_image = np.zeros((height, width, image.shape[2]), dtype=image.dtype)
    out_image[:new_h, :new_w] = resized
    out_masks = np.zeros((height, width, masks.shape[2]), dtype=bool)
    # cv2.resize takes at most 512 channels: resize the masks in chunks.
    for start in range(0, masks.shape[2], 512):
        chunk = masks[:, :, start:start + 512].astype(np.uint8)
        small = cv2.resize(chunk, (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT)
        out_masks[:new_h, :new_w, start:start + 512] = small.reshape(new_h, new_w, -1) > 0
    return out_image, out_masks


class Augmenter:
    """Callable adapter ``(image, masks, rng=None) -> (image, masks)``; build it with
    :func:`make_augmenter`.

    Call arguments:
        image: [H, W, C] uint8 image (after resizing).
        masks: [H, W, N] bool instance masks aligned with ``image``; N may be 0.
        rng: optional ``np.random.Generator``; seeds albumentations (reproducible); passed to
            callables that take ``rng``; unused by imgaug.

    Returns:
        image: [H, W, C] uint8, same shape as the input.
        masks: [H, W, N] bool, same N, transformed with the image's geometry.

    Attributes:
        kind: "albumentations", "imgaug" or "callable".
        augmentation: the wrapped object.
    """

    def __init__(self, augmentation, kind):
        if kind not in KINDS:
            raise ValueError(f"Augmenter: kind must be one of {KINDS}, got {kind!r}")
        self.augmentation = augmentation
        self.kind = kind
        # Re-seeding a shared albumentations transform and then calling it must not interleave
        # with another thread of a parallel tf.data map.
        self._lock = threading.Lock()
        self._hooks = None
        self._pass_rng = False
        if kind == "imgaug":
            if type(augmentation).__module__.split(".")[0] == "imgaug":
                self._hooks = _import_imgaug().HooksImages(activator=_mask_activator)
            else:
                self._hooks = _MaskHooks()
        elif kind == "callable":
            self._pass_rng = _accepts_rng(augmentation)

    def __repr__(self):
        return f"Augmenter(kind={self.kind!r}, augmentation={self.augmentation!r})"

    def __call__(self, image, masks, rng=None):
        image = np.asarray(image)
        masks = np.asarray(masks)
        if image.ndim != 3:
            raise ValueError(f"augmentation: image must be [H, W, C], got shape {image.shape}")
        if masks.ndim != 3 or masks.shape[:2] != image.shape[:2]:
            raise ValueError(f"augmentation: masks must be [H, W, N] with the image's H, W "
                             f"{image.shape[:2]}, got shape {masks.shape}")
        masks = masks.astype(bool, copy=False)
        if self.kind == "albumentations":
            out_image, out_masks = self._albumentations(image, masks, rng)
        elif self.kind == "imgaug":
            out_image, out_masks = self._imgaug(image, masks)
        else:
            if self._pass_rng:
                result = self.augmentation(image, masks, rng=rng)
            else:
                result = self.augmentation(image, masks)
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise ValueError(f"augmentation callable {self.augmentation!r} must return "
                                 f"(image, masks), got {type(result).__name__}")
            out_image, out_masks = np.asarray(result[0]), np.asarray(result[1])
        return self._check(image, masks, out_image, out_masks)

    def _check(self, image, masks, out_image, out_masks):
        if (out_image.ndim == 3 and out_image.shape[2] == image.shape[2]
                and out_image.shape[:2] != image.shape[:2] and out_masks.ndim == 3
                and out_masks.shape[:2] == out_image.shape[:2]):
            # A size-changing transform (random scale, crop): back to the input size, aligned.
            out_image, out_masks = fit_to_shape(out_image, np.asarray(out_masks, dtype=bool),
                                                image.shape[:2])
        if out_image.shape != image.shape:
            raise ValueError(
                f"augmentation ({self.kind}) changed the image shape from {image.shape} to "
                f"{out_image.shape}; augmentations run after resizing and must keep the size "
                f"(pad or resize back, e.g. crop with a same-size output)")
        if out_masks.shape != masks.shape:
            raise ValueError(
                f"augmentation ({self.kind}) returned masks of shape {out_masks.shape}, expected "
                f"{masks.shape} ([H, W, N] aligned with the image, same instance count)")
        if out_image.dtype != image.dtype:
            if np.issubdtype(out_image.dtype, np.floating) and image.dtype == np.uint8:
                out_image = np.clip(np.rint(out_image), 0, 255)
            out_image = out_image.astype(image.dtype)
        return out_image, out_masks.astype(bool, copy=False)

    def _albumentations(self, image, masks, rng):
        n = masks.shape[2]
        kwargs = {"image": image}
        if n:
            kwargs["masks"] = np.ascontiguousarray(np.transpose(masks, (2, 0, 1)).astype(np.uint8))
        with self._lock:
            if rng is not None and hasattr(self.augmentation, "set_random_seed"):
                self.augmentation.set_random_seed(int(rng.integers(0, 2 ** 31 - 1)))
            result = self.augmentation(**kwargs)
        out_image = np.asarray(result["image"])
        if not n:
            return out_image, masks
        out_masks = result["masks"]
        if isinstance(out_masks, (list, tuple)):
            out_masks = np.stack([np.asarray(m) for m in out_masks], axis=0)
        out_masks = np.asarray(out_masks)
        if out_masks.ndim != 3:
            raise ValueError(f"augmentation (albumentations) returned masks of shape "
                             f"{out_masks.shape}, expected [N, H, W]")
        return out_image, np.transpose(out_masks, (1, 2, 0)) > 0

    def _imgaug(self, image, masks):
        det = self.augmentation.to_deterministic()
        out_image = np.asarray(det.augment_image(image))
        if masks.shape[2] == 0:
            return out_image, masks
        out_masks = np.asarray(det.augment_image(masks.astype(np.uint8), hooks=self._hooks))
        return out_image, out_masks > 0


def make_augmenter(augmentation):
    """Wrap an augmentation object into an :class:`Augmenter`.

    Args:
        augmentation: None; an :class:`Augmenter` (returned unchanged); an imgaug augmenter (or
            any object with ``to_deterministic`` and ``augment_image``); an albumentations
            transform or ``Compose``; or a callable ``(image, masks) -> (image, masks)`` (see the
            module docstring).

    Returns:
        An :class:`Augmenter`, or None when ``augmentation`` is None.

    Raises:
        ImportError: an imgaug augmenter needs ``import imgaug`` and it fails (imgaug 0.4 does not
            work with NumPy 2); the message lists albumentations equivalents.
        TypeError: ``augmentation`` is none of the kinds above.

    Example::

        import albumentations as A
        augment = make_augmenter(A.Compose([A.HorizontalFlip(p=0.5)]))
        image, masks = augment(image, masks, rng=np.random.default_rng(0))
    """
    if augmentation is None or isinstance(augmentation, Augmenter):
        return augmentation
    if _is_imgaug_like(augmentation):
        return Augmenter(augmentation, "imgaug")
    if _is_albumentations(augmentation):
        return Augmenter(augmentation, "albumentations")
    if callable(augmentation):
        return Augmenter(augmentation, "callable")
    raise TypeError(f"augmentation must be an albumentations transform, an imgaug augmenter or "
                    f"a callable (image, masks) -> (image, masks); got "
                    f"{type(augmentation).__name__}: {augmentation!r}")

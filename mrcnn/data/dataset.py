"""The classic ``Dataset`` base class and a robust image reader.

``Dataset`` keeps the API of the classic ``mrcnn.utils.Dataset``: subclasses register classes and
images with ``add_class`` / ``add_image``, call ``prepare()``, and override ``load_mask`` (and
``image_reference``). Class 0 is always ``"BG"`` (source ``""``, id 0).

Differences from the classic class, all of them stricter or more robust:

- ``load_image`` goes through :func:`load_image_file`, which always returns ``[H, W, 3]`` uint8 RGB:
  grayscale is replicated to three channels, alpha is dropped (not composited), palette images are
  expanded through their palette, and 16-bit / 32-bit / float images are brought to 0-255 by the
  rule documented in :func:`to_rgb_uint8`.
- A missing file raises ``FileNotFoundError`` and an unreadable one raises :class:`ImageLoadError`
  (a ``ValueError``); both messages name the image id and the path.
- Using ``image_ids`` / ``load_image`` before ``prepare()``, or after images or classes were added
  without calling ``prepare()`` again, raises ``RuntimeError`` instead of silently working on stale
  maps. Attributes that ``prepare()`` creates (``num_classes``, ``class_names`` ...) raise an
  ``AttributeError`` that says to call ``prepare()``.
- ``add_class`` raises ``ValueError`` (not ``AssertionError``) for a source name that contains a dot,
  since ``"source.id"`` keys would become ambiguous.
- ``sources`` is sorted, so it is the same from run to run.
"""
import logging
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["Dataset", "ImageLoadError", "load_image_file", "to_rgb_uint8"]

logger = logging.getLogger(__name__)

# Attributes that only exist after prepare(); __getattr__ turns their absence into a clear hint.
_PREPARED_ATTRIBUTES = frozenset({
    "num_classes", "class_ids", "class_names", "num_images", "_image_ids",
    "class_from_source_map", "image_from_source_map", "sources",
})


class ImageLoadError(ValueError):
    """An image file exists but cannot be decoded (corrupt, truncated, unsupported layout)."""


def _describe(path, image_id):
    if image_id is None:
        return f"image file '{path}'"
    return f"image {image_id!r} (file '{path}')"


def to_rgb_uint8(image, source=None):
    """Convert a decoded image array to RGB uint8.

    Args:
        image: ``[H, W]`` (grayscale), ``[H, W, 1]``, ``[H, W, 2]`` (gray + alpha), ``[H, W, 3]``
            (RGB) or ``[H, W, 4]`` (RGBA) array of any bool, integer or float dtype.
        source: text naming where the array came from, used in error messages.

    Returns:
        ``[H, W, 3]`` uint8 RGB array (a new array unless the input already was one).

    Channels: grayscale is replicated to three channels; an alpha channel is dropped (not composited
    over a background), as the classic ``load_image`` did. The alpha channel is removed *before*
    the intensity rule below, so its values never influence the scaling.

    Intensity rule (one scale for all channels, so colour balance is kept):

    - bool: ``True`` -> 255.
    - uint8: unchanged.
    - other integers: negative values are clipped to 0; if the image maximum is <= 255 the values
      are kept as they are (8-bit data stored in a wider type); otherwise ``[0, max]`` is mapped
      linearly to ``[0, 255]`` and rounded. For a full-range 16-bit image (max 65535) this is exactly
      a division by 257; for a low-dynamic-range 16-bit image (e.g. microscopy with max 1000) it
      stretches the used range to the full 8 bits instead of leaving a nearly black image.
    - floats: non-finite values become 0 and negatives are clipped to 0; if the maximum is <= 1 the
      image is taken to be in ``[0, 1]`` and multiplied by 255; if it is <= 255 it is rounded as is;
      otherwise ``[0, max]`` is mapped to ``[0, 255]`` as for integers.

    Raises:
        ImageLoadError: the array is empty or its shape is not one of the layouts above.
    """
    where = source if source is not None else "image array"
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (1, 2):
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    elif not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise ImageLoadError(
            f"{where}: unsupported image shape {image.shape}; expected [H, W] or [H, W, C] with "
            f"C in 1..4")
    if image.size == 0:
        raise ImageLoadError(f"{where}: image is empty (shape {image.shape})")

    if image.dtype == np.uint8:
        out = image
    elif image.dtype == np.bool_:
        out = image.astype(np.uint8) * np.uint8(255)
    elif np.issubdtype(image.dtype, np.integer):
        work = np.clip(image.astype(np.int64), 0, None)
        peak = int(work.max())
        if peak <= 255:
            out = work.astype(np.uint8)
        else:
            out = np.rint(work.astype(np.float64) * (255.0 / peak)).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        work = image.astype(np.float64)
        work[~np.isfinite(work)] = 0.0
        work = np.clip(work, 0.0, None)
        peak = float(work.max())
        if peak <= 1.0:
            work = work * 255.0
        elif peak > 255.0:
            work = work * (255.0 / peak)
        out = np.clip(np.rint(work), 0, 255).astype(np.uint8)
    else:
        raise ImageLoadError(f"{where}: unsupported image dtype {image.dtype}")

    if out.ndim == 2:
        out = np.stack([out, out, out], axis=-1)
    return np.ascontiguousarray(out)


def _decode_with_pil(path):
    """Decode the first frame with Pillow into an array that ``to_rgb_uint8`` understands."""
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode in ("RGB", "RGBA", "L", "LA", "F") or mode.startswith("I"):
            # I, I;16, I;16B ... keep their full precision for the intensity rule.
            return np.asarray(im)
        if mode in ("P", "PA"):
            # Through RGBA so palettes with transparency convert without Pillow warnings; the
            # alpha channel is dropped afterwards like any other.
            return np.asarray(im.convert("RGBA"))
        if mode == "1":
            return np.asarray(im.convert("L"))
        return np.asarray(im.convert("RGB"))


def load_image_file(path, image_id=None):
    """Read an image file as RGB uint8.

    Args:
        path: file path (str or os.PathLike). A URL (``scheme://...``) is handed to
            ``skimage.io.imread`` as the classic code did.
        image_id: optional id used in error messages (the Dataset passes its internal image id).

    Returns:
        ``[H, W, 3]`` uint8 RGB, pixel layout exactly as stored (EXIF orientation is not applied, so
        the pixels stay aligned with masks drawn on the stored image). Multi-frame files give their
        first frame. Grayscale, alpha, palette, 16-bit and float inputs are converted as described
        in :func:`to_rgb_uint8`.

    Raises:
        FileNotFoundError: ``path`` does not exist (message names the image id and path).
        ImageLoadError: ``path`` exists but cannot be decoded, or is not a regular file.
    """
    path_str = os.fspath(path)
    what = _describe(path_str, image_id)
    is_url = "://" in path_str
    if not is_url:
        if not os.path.exists(path_str):
            raise FileNotFoundError(f"{what} does not exist")
        if not os.path.isfile(path_str):
            raise ImageLoadError(f"{what} is not a regular file")

    array = None
    first_error = None
    if not is_url:
        try:
            array = _decode_with_pil(path_str)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            # Pillow reports corrupt data through several exception types (SyntaxError from some
            # header parsers); anything else is a bug and should propagate.
            first_error = exc
    if array is None:
        # skimage/imageio know formats Pillow lacks (e.g. 16-bit RGB or float multi-channel TIFF
        # through tifffile) and URLs.
        try:
            import skimage.io

            with warnings.catch_warnings():
                # imageio probes every plugin on unknown data, some of which warn on import.
                warnings.simplefilter("ignore", DeprecationWarning)
                array = skimage.io.imread(path_str)
        except Exception as exc:  # noqa: BLE001 - imageio raises many unrelated types
            reason = first_error if first_error is not None else exc
            raise ImageLoadError(
                f"cannot decode {what}: {type(reason).__name__}: {reason}") from reason
    return to_rgb_uint8(array, source=what)


class Dataset:
    """Base class for datasets (classic ``mrcnn.utils.Dataset`` API).

    Subclass it, register classes with ``add_class`` and images with ``add_image``, override
    ``load_mask`` (and ``image_reference`` if useful), then call ``prepare()`` before use::

        class ShapesDataset(Dataset):
            def load_shapes(self, count):
                self.add_class("shapes", 1, "square")
                for i in range(count):
                    self.add_image("shapes", image_id=i, path=f"/data/{i}.png")

            def load_mask(self, image_id):
                ...  # -> (masks [H, W, N] bool, class_ids [N] int32)

    Internal class ids are indices into ``class_info`` (0 is ``"BG"``); internal image ids are
    indices into ``image_info``. Each source keeps its own ids, mapped with ``"source.id"`` keys.

    Args:
        class_map: accepted for compatibility with the classic signature; unused (as in classic).
    """

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}
        self._prepared_sizes = None

    def __getattr__(self, name):
        # Only called when normal lookup fails: give the attributes made by prepare() a useful
        # message. Must not touch other attributes (pickle/copy probe instances without __dict__).
        if name in _PREPARED_ATTRIBUTES:
            raise AttributeError(
                f"{type(self).__name__}.{name} does not exist yet: call prepare() after adding "
                f"classes and images")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ registration
    def add_class(self, source, class_id, class_name):
        """Register class ``class_id`` of ``source`` under ``class_name``.

        A (source, class_id) pair that is already registered is ignored, as in classic (a warning
        is logged if the name differs).

        Raises:
            ValueError: ``source`` contains a '.', which would make ``"source.id"`` keys ambiguous.
        """
        if "." in str(source):
            raise ValueError(
                f"add_class: source {source!r} contains a '.'; source names may not contain dots "
                f"because class keys are written 'source.id'")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                if info["name"] != class_name:
                    logger.warning(
                        "add_class: class %s.%s is already registered as %r; ignoring name %r",
                        source, class_id, info["name"], class_name)
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image: ``image_id`` is the source's own id, ``path`` its file (or URL).

        Extra keyword arguments (width, height, annotations ...) are stored in the image's
        ``image_info`` dict for ``load_mask`` to use.
        """
        image_info = {"id": image_id, "source": source, "path": path}
        image_info.update(kwargs)
        self.image_info.append(image_info)

    def image_reference(self, image_id):
        """A link or text that identifies the image in its source; ``""`` by default.

        Override to return, e.g., a URL to the image on its source website.
        """
        return ""

    # ------------------------------------------------------------------ prepare
    def prepare(self, class_map=None):
        """Build the lookup tables; call after all ``add_class`` / ``add_image`` calls.

        Sets ``num_classes``, ``class_ids`` (``np.arange(num_classes)``), ``class_names`` (the part
        of each name before the first ','), ``num_images``, the image ids (``np.arange``),
        ``class_from_source_map`` / ``image_from_source_map`` (``"source.id"`` -> internal id),
        ``sources`` (sorted, includes ``""`` of BG) and ``source_class_ids`` (per source the
        internal class ids, always including 0 = BG, as in classic).

        Args:
            class_map: unused; kept for the classic signature.
        """
        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [str(c["name"]).split(",")[0] for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        self.class_from_source_map = {
            f"{info['source']}.{info['id']}": int(i)
            for info, i in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {
            f"{info['source']}.{info['id']}": int(i)
            for info, i in zip(self.image_info, self._image_ids)}
        if len(self.image_from_source_map) < self.num_images:
            logger.warning(
                "prepare: %d images share a 'source.id' key with another image; "
                "image_from_source_map keeps the last of each",
                self.num_images - len(self.image_from_source_map))

        self.sources = sorted({info["source"] for info in self.class_info}, key=str)
        self.source_class_ids = {}
        for source in self.sources:
            self.source_class_ids[source] = [
                i for i, info in enumerate(self.class_info)
                if i == 0 or info["source"] == source]
        self._prepared_sizes = (len(self.class_info), len(self.image_info))

    def _require_prepared(self, what):
        sizes = self.__dict__.get("_prepared_sizes")
        if sizes is None:
            raise RuntimeError(
                f"{type(self).__name__}.{what} used before prepare(): call dataset.prepare() after "
                f"adding classes and images")
        now = (len(self.class_info), len(self.image_info))
        if sizes != now:
            raise RuntimeError(
                f"{type(self).__name__}.{what}: classes/images were added after prepare() "
                f"(classes {sizes[0]} -> {now[0]}, images {sizes[1]} -> {now[1]}); call prepare() "
                f"again")

    def _image_info_for(self, image_id, what):
        n = len(self.image_info)
        if isinstance(image_id, (bool, np.bool_)) or not isinstance(image_id, (int, np.integer)):
            raise ValueError(
                f"{what}: image_id must be an integer internal id in [0, {n}), got {image_id!r}")
        if not 0 <= int(image_id) < n:
            raise ValueError(f"{what}: image_id {image_id} is out of range [0, {n})")
        return self.image_info[int(image_id)]

    # ------------------------------------------------------------------ lookups
    @property
    def image_ids(self):
        """``[num_images]`` int array of internal image ids (``np.arange``); needs ``prepare()``."""
        self._require_prepared("image_ids")
        return self._image_ids

    def map_source_class_id(self, source_class_id):
        """Internal class id for a ``"source.id"`` key, e.g. ``"coco.12"`` -> 23.

        Raises:
            RuntimeError: ``prepare()`` was not called.
            KeyError: unknown key (the message lists a few known keys).
        """
        self._require_prepared("map_source_class_id")
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            known = list(self.class_from_source_map)[:8]
            raise KeyError(
                f"map_source_class_id: unknown class key {source_class_id!r}; keys are "
                f"'source.id', e.g. {known}") from None

    def get_source_class_id(self, class_id, source):
        """The source's own id of internal class ``class_id``, checking that it belongs to
        ``source``.

        Raises:
            ValueError: ``class_id`` out of range, or the class belongs to another source.
        """
        n = len(self.class_info)
        if not 0 <= int(class_id) < n:
            raise ValueError(f"get_source_class_id: class_id {class_id} is out of range [0, {n})")
        info = self.class_info[int(class_id)]
        if info["source"] != source:
            raise ValueError(
                f"get_source_class_id: class_id {class_id} ({info['name']!r}) belongs to source "
                f"{info['source']!r}, not {source!r}")
        return info["id"]

    def source_image_link(self, image_id):
        """The path or URL of image ``image_id`` (internal id) as given to ``add_image``."""
        return self._image_info_for(image_id, "source_image_link")["path"]

    # ------------------------------------------------------------------ loading
    def load_image(self, image_id):
        """Load image ``image_id`` (internal id) as ``[H, W, 3]`` uint8 RGB.

        Reads ``image_info[image_id]["path"]`` with :func:`load_image_file` (grayscale -> RGB,
        alpha dropped, palette expanded, 16-bit/float scaled to 0-255). Override for images that do
        not live in files.

        Raises:
            RuntimeError: ``prepare()`` was not called (or must be called again).
            ValueError: ``image_id`` is not a valid internal id.
            FileNotFoundError / ImageLoadError: as :func:`load_image_file`.
        """
        self._require_prepared("load_image")
        info = self._image_info_for(image_id, "load_image")
        return load_image_file(info["path"], image_id=int(image_id))

    def load_mask(self, image_id):
        """Instance masks of image ``image_id``; subclasses must override.

        Returns:
            masks: ``[H, W, N]`` bool, one channel per instance.
            class_ids: ``[N]`` int32 internal class ids.

        The base class logs a warning and returns empty arrays: masks of shape ``[0, 0, 0]`` (bool)
        and class ids of shape ``[0]`` (int32), as classic (which used a float empty mask).
        """
        logger.warning(
            "You are using the default load_mask(), which returns no instances; "
            "override load_mask() in your Dataset subclass.")
        mask = np.empty([0, 0, 0], dtype=bool)
        class_ids = np.empty([0], dtype=np.int32)
        return mask, class_ids

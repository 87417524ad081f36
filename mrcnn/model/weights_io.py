"""Read and write the classic Keras-2 ``.h5`` weights layout for Keras 3 models.

The classic ``mrcnn`` checkpoints (``mask_rcnn_coco.h5`` and everything trained from it) were written
by Keras 2 ``model.save_weights(path)``; this module reads and writes that layout so that those
files load into the Keras 3 model and our checkpoints load into classic code.

Layout (see ``shared/spec/weights-coco-r101.md``)::

    /                       attrs: layer_names [S], backend, keras_version
    /<layer>                attrs: weight_names [S] e.g. b"conv1/kernel:0" (empty for weightless layers)
    /<layer>/<weight_name>  dataset; "/" inside the weight name makes nested groups
                            (f["conv1"]["conv1/kernel:0"] == f["conv1/conv1/kernel:0"])

A full-model Keras 2 save (``model.save(x.h5)``) holds the same under the group ``model_weights``.
A nested sub-model (the shared RPN, ``rpn_model``) is ONE group named after the sub-model, whose
weight names carry the inner layers' names (``rpn_conv_shared/kernel:0``, ...).

Values are stored as they are in the Keras variables: Conv2D kernels HWIO, Dense kernels (in, out),
Conv2DTranspose kernels (kh, kw, out, in), BatchNorm order gamma, beta, moving_mean,
moving_variance; no conversion is applied on either side.
"""
import dataclasses
import logging
import os
import re
import uuid
import warnings
import zipfile

import numpy as np

__all__ = [
    "WeightLoadReport",
    "load_classic_weights",
    "save_classic_weights",
    "read_classic_weight_index",
    "NonFiniteWeightsWarning",
    "NonFiniteWeightsError",
    "CHECKSUM_ATTR",
    "NONFINITE_ATTR",
    "inspect_weights_file",
    "temp_file_name",
    "TEMP_FILE_RE",
]

logger = logging.getLogger(__name__)

# Keras 2 split attributes larger than the HDF5 object-header limit into name0, name1, ...
_HDF5_ATTR_LIMIT = 64512
_KERAS_VERSION_TAG = "2.x-compatible (mrcnn)"
#: Root attribute holding the sha256 of every weight (names, dtypes, shapes, bytes, file order),
#: written by :func:`save_classic_weights` and verified by :func:`load_classic_weights`.
CHECKSUM_ATTR = "mrcnn_weights_sha256"
#: Root attribute holding the number of NaN / infinite weight values at save time.
NONFINITE_ATTR = "mrcnn_nonfinite_values"


class NonFiniteWeightsWarning(UserWarning):
    """A weights file holds NaN or infinite values (the model will detect nothing useful)."""


class NonFiniteWeightsError(FloatingPointError):
    """Refused to write a checkpoint whose weights hold NaN or infinite values."""


def _digest_update(digest, group, weight_name, value):
    value = np.ascontiguousarray(value)
    digest.update(f"{group}/{weight_name}|{value.dtype.str}|{value.shape}".encode("utf8"))
    digest.update(value.tobytes())


def _count_nonfinite(value):
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.floating):
        return 0
    return int(value.size - np.count_nonzero(np.isfinite(value)))


@dataclasses.dataclass
class WeightLoadReport:
    """What :func:`load_classic_weights` did, by top-level layer name of the Keras model.

    Attributes:
        loaded: layers whose weights were all assigned from the file.
        skipped: layers left untouched on purpose: named in ``exclude``, or mismatching with
            ``skip_mismatch=True``.
        missing: layers that own weights but have no group in the file (left untouched).
        unused: file groups with weights that no model layer took (by-name mode only).
    """

    loaded: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)

    def as_dict(self):
        """Plain dict of the four lists."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# HDF5 helpers
# ----------------------------------------------------------------------------------------------
def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _read_name_list(group, name):
    """List of str stored in attribute ``name`` (or chunks ``name0``, ``name1``, ...); None if absent."""
    if name in group.attrs:
        return [_decode(v) for v in np.asarray(group.attrs[name]).ravel()]
    if f"{name}0" not in group.attrs:
        return None
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values.extend(_decode(v) for v in np.asarray(group.attrs[f"{name}{chunk}"]).ravel())
        chunk += 1
    return values


def _write_name_list(group, name, values):
    """Store a list of str as a fixed-length bytes attribute, chunked like Keras 2 when too large."""
    encoded = [v.encode("utf8") for v in values]
    data = np.array(encoded, dtype="S") if encoded else np.array([], dtype="S1")
    if data.nbytes <= _HDF5_ATTR_LIMIT:
        group.attrs[name] = data
        return
    n_chunks = int(np.ceil(data.nbytes / _HDF5_ATTR_LIMIT))
    for i, chunk in enumerate(np.array_split(data, n_chunks)):
        group.attrs[f"{name}{i}"] = chunk


def _check_readable(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file not found: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Weights path {path!r} is a directory, expected a .h5 file")


def _open_classic(path):
    """Open ``path`` read-only; return (h5py.File, group holding ``layer_names``).

    Raises FileNotFoundError for a missing path and ValueError for anything that is not a classic
    Keras-2 weights file, with a pointer to the right loader for Keras 3 files.
    """
    import h5py

    _check_readable(path)
    if not h5py.is_hdf5(path):
        if zipfile.is_zipfile(path):
            raise ValueError(
                f"{path!r} is a zip archive (a Keras 3 .keras model file?), not a classic Keras .h5 "
                "weights file; load it with keras.saving.load_model or keras_model.load_weights")
        raise ValueError(f"{path!r} is not an HDF5 file, so not a classic Keras .h5 weights file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"Cannot open weights file {path!r}: it is truncated or corrupt "
                         f"(HDF5: {exc})") from None
    try:
        for root in (f, f.get("model_weights")):
            if root is not None and _read_name_list(root, "layer_names") is not None:
                return f, root
        looks_keras3 = ("layers" in f or "vars" in f
                        or os.path.basename(path).lower().endswith(".weights.h5"))
        if looks_keras3:
            raise ValueError(
                f"{path!r} looks like a Keras 3 .weights.h5 file (groups 'layers'/'vars'), not a "
                "classic Keras .h5 weights file (no 'layer_names' attribute); load it with "
                "keras_model.load_weights(path) (MaskRCNN.load_weights handles both formats)")
        raise ValueError(
            f"{path!r} has no 'layer_names' attribute at its root or in 'model_weights': it is not "
            "a classic Keras .h5 weights file")
    except BaseException:
        f.close()
        raise


def _file_layers(path, root):
    """[(group name, [(weight name, h5py.Dataset), ...]), ...] in ``layer_names`` order."""
    layers = []
    for name in _read_name_list(root, "layer_names"):
        if name not in root:
            raise ValueError(f"Weights file {path!r} lists layer {name!r} in 'layer_names' "
                             "but has no group of that name (truncated or corrupt file?)")
        group = root[name]
        weight_names = _read_name_list(group, "weight_names")
        if weight_names is None:
            raise ValueError(f"Weights file {path!r}: group {name!r} has no 'weight_names' "
                             "attribute (not a classic Keras .h5 weights file?)")
        entries = []
        for weight_name in weight_names:
            if weight_name not in group:
                raise ValueError(f"Weights file {path!r}: group {name!r} lists weight "
                                 f"{weight_name!r} but holds no such dataset (corrupt file?)")
            entries.append((weight_name, group[weight_name]))
        layers.append((name, entries))
    return layers


def read_classic_weight_index(filepath):
    """List every weight of a classic Keras-2 ``.h5`` weights file.

    Args:
        filepath: path of the file (``save_weights`` layout, or a full-model save with
            ``model_weights``).

    Returns:
        list of ``(layer_group: str, weight_name: str, shape: tuple of int)`` in file order
        (``layer_names`` order, then ``weight_names`` order); weightless layers do not appear.
        ``" ".join([g, w, "x".join(map(str, shape))])`` gives the lines of
        ``weights-coco-r101.txt``.
    """
    path = os.fspath(filepath)
    f, root = _open_classic(path)
    with f:
        return [(group, weight_name, tuple(int(d) for d in dataset.shape))
                for group, entries in _file_layers(path, root)
                for weight_name, dataset in entries]


# ----------------------------------------------------------------------------------------------
# Model side
# ----------------------------------------------------------------------------------------------
def _strip_suffix(name):
    return re.sub(r":\d+$", "", name)


def _split_weight_name(weight_name, group_name):
    """(inner layer, variable) of a file weight name: ``"rpn_conv_shared/kernel:0"`` ->
    ``("rpn_conv_shared", "kernel")``; a name without "/" belongs to the group itself."""
    parts = _strip_suffix(weight_name).split("/")
    if len(parts) == 1:
        return group_name, parts[0]
    return parts[-2], parts[-1]


def _layer_entries(layer):
    """[(inner layer name, variable name, variable), ...] of one top-level layer, in weight order.

    A plain layer's variables carry the layer's own name (a TimeDistributed wrapper stores its
    inner layer's weights under the wrapper's name, as classic Keras did); a nested model's
    variables carry the name of the innermost layer that owns them.
    """
    import keras

    owner = {}
    is_model = isinstance(layer, keras.Model)
    if is_model:
        stack = list(layer.layers)
        while stack:
            inner = stack.pop(0)
            if isinstance(inner, keras.Model):
                stack[:0] = list(inner.layers)
                continue
            for variable in inner.weights:
                owner.setdefault(id(variable), inner.name)
    entries, seen = [], set()
    for variable in layer.weights:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        inner_name = owner.get(id(variable))
        if inner_name is None:
            path_parts = _strip_suffix(getattr(variable, "path", variable.name)).split("/")
            inner_name = path_parts[-2] if (is_model and len(path_parts) > 1) else layer.name
        entries.append((inner_name, _strip_suffix(variable.name).split("/")[-1], variable))
    return entries


def _weight_owning_layers(keras_model):
    if not hasattr(keras_model, "layers"):
        raise ValueError(f"keras_model must be a Keras model with .layers, got "
                         f"{type(keras_model).__name__}")
    return [layer for layer in keras_model.layers if layer.weights]


def _pair_weights(model_entries, file_entries, group_name):
    """Pair model variables with file weights: by (inner layer, variable) name, then by variable
    name alone, then by order. Returns a list of (variable, model label, file name, dataset) or
    None when the counts differ."""
    if len(model_entries) != len(file_entries):
        return None
    file_keys = [_split_weight_name(name, group_name) for name, _ in file_entries]
    model_keys = [(inner, var) for inner, var, _ in model_entries]
    order = list(range(len(file_entries)))
    for key_of in (lambda k: k, lambda k: k[1]):
        mk = [key_of(k) for k in model_keys]
        fk = [key_of(k) for k in file_keys]
        if len(set(mk)) == len(mk) and len(set(fk)) == len(fk) and set(mk) == set(fk):
            position = {k: i for i, k in enumerate(fk)}
            order = [position[k] for k in mk]
            break
    return [(variable, f"{inner}/{var}", file_entries[j][0], file_entries[j][1])
            for (inner, var, variable), j in zip(model_entries, order)]


def _check_layer(layer_name, model_entries, file_group, file_entries):
    """Return (pairs, problems): pairs as :func:`_pair_weights`, problems a list of str."""
    pairs = _pair_weights(model_entries, file_entries, file_group)
    if pairs is None:
        return None, [
            f"layer {layer_name!r}: the file's group {file_group!r} has {len(file_entries)} "
            f"weights {[n for n, _ in file_entries]} but the model layer has "
            f"{len(model_entries)} {[f'{i}/{v}' for i, v, _ in model_entries]}"]
    problems = []
    for variable, label, file_name, dataset in pairs:
        model_shape = tuple(int(d) for d in variable.shape)
        file_shape = tuple(int(d) for d in dataset.shape)
        if model_shape != file_shape:
            hint = ""
            if label.split("/")[0] == "rpn_conv_shared" and len(file_shape) == 1:
                hint = (f" (the file's RPN convolution has {file_shape[0]} channels: set "
                        f"Config.RPN_CONV_CHANNELS = {file_shape[0]})")
            problems.append(f"layer {layer_name!r}: weight {file_name!r} has shape {file_shape} "
                            f"in the file but {label!r} has shape {model_shape} in the model"
                            + hint)
    return pairs, problems


def _assign(variable, value):
    try:
        value = np.asarray(value, dtype=variable.dtype)
    except TypeError:
        pass  # dtypes NumPy does not know (bfloat16): let the backend convert
    variable.assign(value)


def _read_and_verify(path, f, file_layers):
    """{dataset.name: value} of every weight; checks the stored checksum when there is one.

    Raises ValueError naming ``path`` when a dataset cannot be read (truncated file) or the
    checksum differs (the file changed after our save wrote it). Classic files carry no checksum
    and are read as before.
    """
    import hashlib

    digest = hashlib.sha256()
    values = {}
    try:
        for group, entries in file_layers:
            for weight_name, dataset in entries:
                value = dataset[()]
                values[dataset.name] = value
                _digest_update(digest, group, weight_name, value)
        stored = f.attrs.get(CHECKSUM_ATTR)
    except (OSError, KeyError, RuntimeError) as exc:
        raise ValueError(f"Cannot read the weights in {path!r}: the file is truncated or corrupt "
                         f"({type(exc).__name__}: {exc})") from None
    if stored is not None:
        stored = _decode(stored)
        if stored != digest.hexdigest():
            raise ValueError(
                f"Weights file {path!r} is corrupted: its weights do not match the checksum "
                f"stored when it was written ({CHECKSUM_ATTR} {stored[:16]}..., computed "
                f"{digest.hexdigest()[:16]}...); refusing to load it")
    return values


def inspect_weights_file(filepath):
    """Whether a weights file can be loaded whole; never raises for a bad file.

    Returns:
        ``(ok: bool, reason: str)``: ``ok`` False for a file that cannot be opened or read, whose
        checksum differs, or that holds NaN / infinite values (read from the marker written at
        save time, or counted in files without one); ``reason`` says which.
    """
    path = os.fspath(filepath)
    try:
        f, root = _open_classic(path)
        with f:
            marker = f.attrs.get(NONFINITE_ATTR)
            values = _read_and_verify(path, f, _file_layers(path, root))
    except (OSError, ValueError) as exc:
        return False, str(exc)
    bad = int(marker) if marker is not None else sum(_count_nonfinite(v) for v in values.values())
    if bad:
        return False, f"{path!r} holds {bad} NaN or infinite weight value(s)"
    return True, "ok"


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------
def load_classic_weights(keras_model, filepath, by_name=False, exclude=None, skip_mismatch=False):
    """Load a classic Keras-2 ``.h5`` weights file into a Keras 3 model.

    Args:
        keras_model: a built ``keras.Model``; its top-level layers are matched to the file's
            layer groups (a nested sub-model such as ``rpn_model`` is one group).
        filepath: ``str`` or path-like, a file written by Keras 2 ``save_weights`` / ``save``
            (``model_weights`` group) or by :func:`save_classic_weights`.
        by_name: False: Keras 2 topological semantics, the model's weight-owning layers in order
            are zipped with the file's weight-owning groups in ``layer_names`` order (the counts
            must agree). True: each model layer takes the group of the same name; layers without
            a group are left untouched, groups without a layer are ignored.
        exclude: list of top-level layer names to leave untouched; forces ``by_name=True``
            (classic ``MaskRCNN.load_weights`` semantics, e.g. the class-dependent heads
            ``["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]``).
        skip_mismatch: if True, layers whose weight count or shapes differ from the file are
            skipped with a warning instead of raising.

    Within a layer, variables are paired with the file's weights by inner-layer and variable
    name (``"rpn_conv_shared/kernel:0"`` -> layer ``rpn_conv_shared`` of ``rpn_model``, variable
    ``kernel``; ``:0`` suffixes ignored), else by variable name, else by order when only the
    names differ (e.g. Keras-1 era files like the ImageNet ResNet50 ``notop`` file).
    Nothing is assigned unless every checked layer matches (or ``skip_mismatch``).

    Returns:
        :class:`WeightLoadReport` (loaded, skipped, missing, unused layer names).

    Raises:
        FileNotFoundError: ``filepath`` does not exist.
        ValueError: not a classic Keras .h5 weights file; layer counts differ (topological mode);
            weight counts or shapes differ (the message lists every mismatching layer and the
            ``exclude=[...]`` that skips them).
    """
    path = os.fspath(filepath)
    if isinstance(exclude, str):
        exclude = [exclude]
    exclude = list(exclude or [])
    if exclude:
        by_name = True
    model_layers = _weight_owning_layers(keras_model)
    report = WeightLoadReport()

    f, root = _open_classic(path)
    with f:
        file_layers = _file_layers(path, root)
        values = _read_and_verify(path, f, file_layers)
        file_with_weights = [(name, entries) for name, entries in file_layers if entries]
        if by_name:
            _warn_unknown_excludes(keras_model, exclude, {name for name, _ in file_layers})
            file_by_name = dict(file_layers)
            jobs = []
            for layer in model_layers:
                if layer.name in exclude:
                    report.skipped.append(layer.name)
                elif layer.name in file_by_name:
                    jobs.append((layer, layer.name, file_by_name[layer.name]))
                else:
                    report.missing.append(layer.name)
            taken = {group for _, group, _ in jobs} | set(exclude)
            report.unused = [name for name, _ in file_with_weights if name not in taken]
        else:
            if len(model_layers) != len(file_with_weights):
                raise ValueError(
                    f"Cannot load {path!r} topologically: the model has {len(model_layers)} "
                    f"layers with weights but the file has {len(file_with_weights)}; pass "
                    "by_name=True to load the layers whose names match (and exclude=[...] for "
                    "layers that differ)")
            jobs = [(layer, name, entries)
                    for layer, (name, entries) in zip(model_layers, file_with_weights)]

        assignments, bad_layers, problems = [], [], []
        for layer, group, file_entries in jobs:
            pairs, layer_problems = _check_layer(layer.name, _layer_entries(layer), group,
                                                 file_entries)
            if layer_problems:
                bad_layers.append(layer.name)
                problems.extend(layer_problems)
            else:
                assignments.append((layer.name, pairs))

        if problems:
            details = "\n  ".join(problems)
            if not skip_mismatch:
                suggestion = exclude + [n for n in bad_layers if n not in exclude]
                raise ValueError(
                    f"Cannot load weights from {path!r}: {len(bad_layers)} layer(s) do not match "
                    f"the model:\n  {details}\nIf these layers are meant to differ (classic "
                    f"fine-tuning on a different class count), pass exclude={suggestion!r} to "
                    "skip them, or skip_mismatch=True.")
            warnings.warn(f"Skipping {len(bad_layers)} mismatching layer(s) while loading "
                          f"{path!r}:\n  {details}", UserWarning, stacklevel=2)
            report.skipped.extend(bad_layers)

        nonfinite = []
        for layer_name, pairs in assignments:
            for variable, _, file_name, dataset in pairs:
                value = values[dataset.name]
                if _count_nonfinite(value):
                    nonfinite.append(f"{layer_name}/{file_name}")
                _assign(variable, value)
            report.loaded.append(layer_name)
    if nonfinite:
        warnings.warn(f"Weights file {path!r} holds NaN or infinite values in {len(nonfinite)} "
                      f"weight(s), e.g. {nonfinite[:3]}; the model will not detect anything "
                      "useful (a diverged training run?). Use an earlier checkpoint.",
                      NonFiniteWeightsWarning, stacklevel=2)

    logger.info("Loaded weights of %d layers from %s (%d skipped, %d without weights in the file)",
                len(report.loaded), path, len(report.skipped), len(report.missing))
    if report.missing:
        logger.info("Model layers that got nothing from %s: %s", path, report.missing)
    if report.unused:
        logger.debug("File groups of %s that no model layer took: %s", path, report.unused)
    return report


def _warn_unknown_excludes(keras_model, exclude, file_names):
    top = {layer.name for layer in keras_model.layers}
    for name in exclude:
        if name in top or name in file_names:
            continue
        inside = [layer.name for layer in keras_model.layers
                  if any(inner == name for inner, _, _ in _layer_entries(layer))
                  and layer.name != name]
        if inside:
            warnings.warn(f"exclude: {name!r} is a layer inside the nested model {inside[0]!r}; "
                          f"only top-level layers can be excluded, use {inside[0]!r}",
                          UserWarning, stacklevel=3)
        else:
            warnings.warn(f"exclude: no layer named {name!r} in the model or the weights file",
                          UserWarning, stacklevel=3)


def save_classic_weights(keras_model, filepath, require_finite=False):
    """Write the weights of ``keras_model`` in the classic Keras-2 ``.h5`` layout, atomically.

    ``layer_names`` lists every top-level layer in ``keras_model.layers`` order (weightless ones
    with an empty ``weight_names``); each weight is stored as ``<inner layer>/<variable>:0`` under
    the group of its top-level layer, so a nested sub-model is one group with the inner layers'
    names. The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``: a crash never leaves a half-written file under ``filepath``, and an existing
    file there stays intact until the new one is complete.

    The root attributes :data:`CHECKSUM_ATTR` (sha256 of the weights) and :data:`NONFINITE_ATTR`
    (count of NaN / infinite values) let :func:`load_classic_weights` detect a corrupted file
    and ``find_last`` pass over a diverged checkpoint; classic readers ignore them.

    Args:
        keras_model: a built ``keras.Model``.
        filepath: ``str`` or path-like target; its folder must exist.
        require_finite: if True, raise :class:`NonFiniteWeightsError` (nothing written) when a
            weight holds NaN or infinite values (training checkpoints use this).

    Returns:
        ``filepath`` as str.

    Raises:
        OSError naming the file and its folder when the write fails (full disk, read-only
        folder); the previous file at ``filepath`` is then untouched.
    """
    import hashlib
    import h5py
    import keras

    path = os.fspath(filepath)
    if not hasattr(keras_model, "layers"):
        raise ValueError(f"keras_model must be a Keras model with .layers, got "
                         f"{type(keras_model).__name__}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot save weights to {path!r}: folder {folder!r} does not exist")
    tmp_path = os.path.join(folder, temp_file_name(path))
    digest, nonfinite = hashlib.sha256(), 0
    try:
        with h5py.File(tmp_path, "x") as f:
            f.attrs["backend"] = "tensorflow"
            f.attrs["keras_version"] = _KERAS_VERSION_TAG
            _write_name_list(f, "layer_names", [layer.name for layer in keras_model.layers])
            for layer in keras_model.layers:
                group = f.create_group(layer.name)
                names = []
                for inner, var, variable in _layer_entries(layer):
                    name, k = f"{inner}/{var}:0", 1
                    while name in names:  # Keras 2 uniquified repeated variable names likewise
                        name, k = f"{inner}/{var}_{k}:0", k + 1
                    names.append(name)
                    value = keras.ops.convert_to_numpy(variable)
                    nonfinite += _count_nonfinite(value)
                    _digest_update(digest, layer.name, name, value)
                    group.create_dataset(name, data=value)
                _write_name_list(group, "weight_names", names)
            if require_finite and nonfinite:
                raise NonFiniteWeightsError(
                    f"Not writing {path!r}: {nonfinite} weight value(s) are NaN or infinite "
                    "(training diverged)")
            f.attrs[CHECKSUM_ATTR] = digest.hexdigest()
            f.attrs[NONFINITE_ATTR] = nonfinite
        os.replace(tmp_path, path)
    except OSError as exc:
        _remove_quietly(tmp_path)
        raise OSError(exc.errno, f"Cannot write weights file {path!r} into folder {folder!r} "
                      f"({exc}); a full disk or a read-only folder? An existing file of that "
                      "name is untouched") from exc
    except BaseException:
        _remove_quietly(tmp_path)
        raise
    logger.info("Saved weights of %d layers to %s",
                sum(1 for layer in keras_model.layers if layer.weights), path)
    return path


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


#: Pattern of the temporary files of :func:`save_classic_weights`: ``.<name>.<pid>-<hex>.tmp``.
TEMP_FILE_RE = re.compile(r"^\.(?P<target>.+)\.(?:(?P<pid>\d+)-)?[0-9a-f]{32}\.tmp$")


def temp_file_name(path):
    """Name of the temporary file a save of ``path`` writes first (it carries the writer's pid,
    so that a later start can tell an interrupted write from one in progress)."""
    return f".{os.path.basename(path)}.{os.getpid()}-{uuid.uuid4().hex}.tmp"

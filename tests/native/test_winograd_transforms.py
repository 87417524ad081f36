"""Tests for mrcnn/native/winograd_transforms.cc: the native Winograd tile transforms against
mrcnn.model.winograd's XLA-compiled ones and the direct convolution, their errors, and when
mrcnn.model.winograd uses them."""
import platform
import shutil

import numpy as np
import pytest

import tensorflow as tf

from mrcnn import native
from mrcnn.model import winograd
from mrcnn.model.winograd import native_transforms, winograd_applies, winograd_conv2d

_CAN_BUILD = (platform.machine() == "x86_64" and shutil.which("g++") is not None
              and native.cpu_supports_library())
OPS = native.winograd_ops()
needs_library = pytest.mark.skipif(OPS is None, reason="the native library is not built here "
                                   "(no g++ or no AVX2/FMA; test_library_is_built_where_it_can)")


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_library_is_built_where_it_can():
    """`make test` builds the library first (Makefile): on an x86-64 machine with g++ and
    AVX2 + FMA it must exist and load, so that the tests below run rather than skip."""
    if not _CAN_BUILD:
        pytest.skip("no g++ or no x86-64 AVX2/FMA CPU: the library cannot be built here")
    assert native.LIBRARY.exists(), "run `python -m mrcnn.native.build` (make install does)"
    assert OPS is not None
    assert hasattr(OPS, "mrcnn_winograd_input_transform")
    assert hasattr(OPS, "mrcnn_winograd_output_transform")


def _tiling(x, filters, m):
    return winograd._Tiling(x, filters, 1 << 40, m)  # one chunk


@needs_library
@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("shape", [(2, 13, 11, 8), (1, 9, 17, 19), (3, 4, 4, 3), (1, 1, 2, 9)])
def test_input_transform_equals_the_compiled_one(shape, m):
    """Every tile row range, channels in runs of 8 and the rest one by one, images whose
    sides are not multiples of m (the padding read as zeros)."""
    x = tf.constant(_rand(*shape, seed=1))
    tiling = _tiling(x, 4, m)
    padded = tiling.pad(x)
    for first, end in [(0, tiling.tiles_h), (tiling.tiles_h // 2, tiling.tiles_h), (0, 0)]:
        rows = padded[:, m * first:m * end + 2]
        want = winograd._input_transform(rows, m=m)
        got = OPS.mrcnn_winograd_input_transform(x, [first, end], m=m)
        assert got.shape == want.shape == ((m + 2) ** 2, shape[0] * (end - first)
                                           * tiling.tiles_w, shape[3])
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-4)


@needs_library
@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("batch, height, width, filters", [(2, 13, 11, 5), (1, 8, 16, 24),
                                                           (3, 1, 7, 9)])
def test_output_transform_equals_the_compiled_one(batch, height, width, filters, m):
    """The blocks A^T M A + bias put in place and cropped to the image."""
    tiles_h, tiles_w = -(-height // m), -(-width // m)
    products = tf.constant(_rand((m + 2) ** 2, batch * tiles_h * tiles_w, filters, seed=2))
    bias = tf.constant(_rand(filters, seed=3))
    want = winograd._output_transform(products, bias, tf.constant([batch, tiles_h, tiles_w]),
                                      m=m)[:, :height, :width]
    got = OPS.mrcnn_winograd_output_transform(products, bias, [batch, height, width], m=m)
    assert got.shape == (batch, height, width, filters)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-4)


@needs_library
def test_bad_arguments_are_errors_naming_them():
    x = tf.zeros([1, 8, 8, 4])
    with pytest.raises(tf.errors.InvalidArgumentError, match="tile_rows"):
        OPS.mrcnn_winograd_input_transform(x, [0, 3], m=4)  # 2 tile rows
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be 2, 4 or 6"):
        OPS.mrcnn_winograd_input_transform(x, [0, 1], m=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"x must be \[N, H, W, C\]"):
        OPS.mrcnn_winograd_input_transform(tf.zeros([8, 8, 4]), [0, 1], m=4)
    products = tf.zeros([36, 4, 6])  # 1 image of 2 x 2 tiles
    with pytest.raises(tf.errors.InvalidArgumentError, match="height 9 is more"):
        OPS.mrcnn_winograd_output_transform(products, tf.zeros([6]), [1, 9, 8], m=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="bias must have 6"):
        OPS.mrcnn_winograd_output_transform(products, tf.zeros([5]), [1, 8, 8], m=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="products must be"):
        OPS.mrcnn_winograd_output_transform(tf.zeros([16, 4, 6]), tf.zeros([6]), [1, 8, 8],
                                            m=4)


@needs_library
@pytest.mark.parametrize("output_tile, tolerance", [(2, 1e-6), (4, 3e-5), (6, 5e-5)])
def test_convolution_with_native_transforms(monkeypatch, output_tile, tolerance):
    """winograd_conv2d through the native transforms, in chunks of tile rows: within
    ``tolerance`` of the range from the direct convolution (F(6 x 6, 3 x 3) coefficients up to
    32 and 1/90 cost precision too), and the same as with the XLA-compiled transforms."""
    x = tf.constant(_rand(2, 22, 19, 64, seed=4))
    w = tf.constant(_rand(3, 3, 64, 24, seed=5) * 0.1)
    b = tf.constant(_rand(24, seed=6))
    expected = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b).numpy()
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 200_000)  # several chunks
    fn = tf.function(lambda x, w, b: winograd_conv2d(x, w, b, output_tile))
    graph = fn.get_concrete_function(x, w, b).graph
    assert any(op.type == "MrcnnWinogradInputTransform" for op in graph.get_operations())
    assert sum(op.type == "MrcnnWinogradOutputTransform" for op in graph.get_operations()) > 1
    got = fn(x, w, b).numpy()
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() < tolerance * scale
    monkeypatch.setattr(native, "ENABLED", False)
    compiled = winograd_conv2d(x, w, b, output_tile).numpy()
    assert np.abs(got - compiled).max() < tolerance * scale


@needs_library
def test_where_the_native_transforms_are_used():
    """float32 outside XLA; inside an XLA-compiled function (which cannot compile them) and in
    other dtypes the compiled transforms run, and so does the 256-channel threshold."""
    assert native_transforms(tf.float32) is OPS
    assert native_transforms(tf.float16) is None
    assert native_transforms(None) is None
    seen = {}

    @tf.function(jit_compile=True)
    def compiled(x):
        seen["inside"] = native_transforms(x.dtype)
        return x

    compiled(tf.zeros([1]))
    assert seen["inside"] is None
    args = ((1, 64, 64, 64), (3, 3), (1, 1), "same", (1, 1), 1, "channels_last")
    assert winograd_applies(*args, dtype=tf.float32)          # MIN_NATIVE_CHANNELS
    assert not winograd_applies(*args, dtype=tf.float16)      # MIN_CHANNELS
    assert not winograd_applies(*args, training=True, dtype=tf.float32)
    assert not winograd_applies((1, 64, 64, 32), *args[1:], dtype=tf.float32)


def test_library_not_loaded_when_off_stale_or_for_another_cpu(monkeypatch, tmp_path):
    """The loader's fallbacks (mrcnn/native/__init__.py): None, and a warning that says what
    to run, never an exception."""
    monkeypatch.setattr(native, "ENABLED", False)
    assert native.winograd_ops() is None
    monkeypatch.setattr(native, "ENABLED", True)
    fake = tmp_path / "_ops.so"
    fake.write_bytes(b"not a library")
    source = tmp_path / "newer.cc"
    source.write_text("// newer than the library")
    import os
    os.utime(fake, (1, 1))
    monkeypatch.setattr(native, "LIBRARY", fake)
    monkeypatch.setattr(native, "SOURCES", (source,))
    native._load.cache_clear()
    try:
        monkeypatch.setattr(native, "cpu_supports_library", lambda: True)
        with pytest.warns(UserWarning, match="older than its sources"):
            assert native.winograd_ops() is None
        native._load.cache_clear()
        os.utime(fake, None)
        os.utime(source, (1, 1))
        with pytest.warns(UserWarning, match="could not load"):
            assert native.winograd_ops() is None
        native._load.cache_clear()
        monkeypatch.setattr(native, "cpu_supports_library", lambda: False)
        with pytest.warns(UserWarning, match="AVX2 and FMA"):
            assert native.winograd_ops() is None
    finally:
        native._load.cache_clear()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2\n")
    assert native.cpu_supports_library(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx\n")
    assert not native.cpu_supports_library(cpuinfo)
    assert not native.cpu_supports_library(tmp_path / "missing")

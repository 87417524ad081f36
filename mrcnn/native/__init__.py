"""Native TensorFlow CPU kernels of mrcnn: Winograd's tile transforms (winograd_transforms.cc).

The library is built from source on the machine that installs mrcnn (``make install`` runs
``python -m mrcnn.native.build``): it is C++ against the installed TensorFlow's headers and
``libtensorflow_framework``, compiled for x86-64 with AVX2 and FMA. Where it is absent, fails to
load (another TensorFlow than it was built for, another CPU) or is turned off (:data:`ENABLED`,
``MRCNN_NATIVE=0``), :func:`winograd_ops` returns None and mrcnn.model.winograd uses its
XLA-compiled transforms: the same results to float rounding, slower.
"""
import functools
import os
import warnings
from pathlib import Path

__all__ = ["ENABLED", "LIBRARY", "SOURCES", "cpu_supports_library", "winograd_ops"]

#: False (or the environment variable ``MRCNN_NATIVE=0``): never load the native kernels
#: (read when a model is traced).
ENABLED = os.environ.get("MRCNN_NATIVE", "1") != "0"

#: The shared library ``python -m mrcnn.native.build`` writes.
LIBRARY = Path(__file__).with_name("_mrcnn_native_ops.so")

#: Its C++ sources.
SOURCES = (Path(__file__).with_name("winograd_transforms.cc"),)

#: CPU features the library is compiled for (``-mavx2 -mfma``).
REQUIRED_CPU_FLAGS = ("avx2", "fma")


def cpu_supports_library(cpuinfo_path="/proc/cpuinfo"):
    """Whether this CPU has the instruction sets the library is compiled for (Linux; False
    where /proc/cpuinfo cannot be read)."""
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return all(flag in flags for flag in REQUIRED_CPU_FLAGS)
    except OSError:
        return False
    return False


@functools.lru_cache(maxsize=None)
def _load():
    if not LIBRARY.exists():
        return None
    if not cpu_supports_library():
        warnings.warn(f"{LIBRARY.name} is compiled for AVX2 and FMA, which this CPU lacks: "
                      "Winograd's transforms run XLA-compiled instead.", stacklevel=3)
        return None
    if any(source.stat().st_mtime > LIBRARY.stat().st_mtime for source in SOURCES
           if source.exists()):
        warnings.warn(f"{LIBRARY} is older than its sources: run `python -m mrcnn.native.build` "
                      "(make install does). Using the XLA-compiled transforms.", stacklevel=3)
        return None
    import tensorflow as tf
    try:
        return tf.load_op_library(str(LIBRARY))
    except (tf.errors.NotFoundError, OSError) as error:
        warnings.warn(f"could not load {LIBRARY} ({error}); it may have been built for another "
                      "TensorFlow: run `python -m mrcnn.native.build` again. Using the "
                      "XLA-compiled transforms.", stacklevel=3)
        return None


def winograd_ops():
    """The loaded native ops module (``mrcnn_winograd_input_transform``,
    ``mrcnn_winograd_output_transform``), or None where they are off, not built or cannot
    load (module docstring)."""
    return _load() if ENABLED else None

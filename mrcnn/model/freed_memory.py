"""Hand the memory that tracing a step freed back to the operating system.

The first batch of a ``fit()`` traces the training step's graph, optimises it (Grappler) and
creates its kernels; validation does the same for the test step. Most of the memory this takes
is freed again, but glibc's allocator keeps freed blocks inside its arenas (the heap and one
arena per thread) as long as anything above them is in use, so the process's resident size
keeps them: 75-130 MiB of a 512 x 512 batch-2 training process, where every step after the
first reaches its memory peak with them still resident (docs/benchmarks.md, "Issue 9, ninth
pass"). ``malloc_trim(0)`` returns the free pages of every arena to the system.

:class:`ReturnFreedMemory` does that once after the first training batch of each ``fit()`` and
once after its first validation; :meth:`mrcnn.model.maskrcnn.MaskRCNN.train` adds it. Linux with
glibc only: elsewhere (or if the C library has no ``malloc_trim``) it does nothing.
"""
import ctypes
import ctypes.util
import logging

import keras

__all__ = ["ReturnFreedMemory", "return_freed_memory"]

logger = logging.getLogger(__name__)

_UNRESOLVED = object()
_malloc_trim = _UNRESOLVED


def _trim_function():
    """glibc's ``malloc_trim``, or None where there is none (resolved once)."""
    global _malloc_trim
    if _malloc_trim is _UNRESOLVED:
        _malloc_trim = None
        name = ctypes.util.find_library("c")
        try:
            trim = getattr(ctypes.CDLL(name), "malloc_trim") if name else None
        except (OSError, AttributeError):
            trim = None
        if trim is not None:
            trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
            _malloc_trim = trim
    return _malloc_trim


def return_freed_memory():
    """Return the free pages of the C allocator's arenas to the system; True if it could
    (glibc's ``malloc_trim(0)``), False where there is no such call."""
    trim = _trim_function()
    if trim is None:
        return False
    trim(0)
    return True


class ReturnFreedMemory(keras.callbacks.Callback):
    """Calls :func:`return_freed_memory` after the first training batch of each ``fit()``
    (the step was traced and optimised during it) and after its first validation."""

    def on_train_begin(self, logs=None):
        self._train_done = self._test_done = False

    def on_train_batch_end(self, batch, logs=None):
        if not self._train_done:
            self._train_done = True
            self._trim("the first training step")

    def on_test_end(self, logs=None):
        if not getattr(self, "_test_done", True):
            self._test_done = True
            self._trim("the first validation")

    @staticmethod
    def _trim(after):
        if return_freed_memory():
            logger.debug("returned freed memory to the system after %s", after)

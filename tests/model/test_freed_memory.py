"""ReturnFreedMemory hands freed memory back once per fit after the first step and validation."""
import keras
import numpy as np

from mrcnn.model import freed_memory
from mrcnn.model.freed_memory import ReturnFreedMemory, return_freed_memory


def test_glibc_trim_is_found_and_runs():
    # The CI machines run Linux with glibc; the call must exist there and return normally.
    assert return_freed_memory() is True


def test_trims_after_the_first_training_batch_and_the_first_validation(monkeypatch):
    calls = []
    monkeypatch.setattr(freed_memory, "return_freed_memory", lambda: calls.append(1) or True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    callback = ReturnFreedMemory()
    model.fit(x, y, batch_size=2, epochs=3, validation_data=(x, y), verbose=0,
              callbacks=[callback])
    assert len(calls) == 2          # 12 batches and 3 validations: once after each first
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    assert len(calls) == 3          # a new fit() traces again


def test_without_malloc_trim_nothing_happens(monkeypatch):
    monkeypatch.setattr(freed_memory, "_malloc_trim", None)
    assert return_freed_memory() is False
    callback = ReturnFreedMemory()
    callback.on_train_begin()
    callback.on_train_batch_end(0)   # no error
    callback.on_test_end()

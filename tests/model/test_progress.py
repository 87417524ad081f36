"""StepBudget: a fixed number of training steps, the expected time after the first ones, the time
left per epoch (on a small real Keras model: the callback only counts batches)."""
import keras
import numpy as np
import pytest

from mrcnn.model.progress import StepBudget, format_minutes
from samples.shapes import shapes


def _fit(budget, epochs, steps_per_epoch=3):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((64, 2), np.float32)
    return model.fit(x, x[:, :1], batch_size=2, epochs=epochs, steps_per_epoch=steps_per_epoch,
                     callbacks=[budget], verbose=0)


def test_stops_after_the_step_count_and_reports_time_left():
    lines = []
    budget = StepBudget(7, measure_after=1, warm=2, printer=lines.append)
    history = _fit(budget, epochs=10)
    assert budget.steps_done == 7 and len(history.epoch) == 3  # 3 + 3 + 1 steps
    assert any("s per step on this machine: the remaining 4 of 7 steps will take about" in line
               for line in lines), lines
    assert lines[-1].startswith("Epoch 3: 7/7 steps, about 0 s left")
    # one budget shared by two train calls keeps counting
    again = StepBudget(5, printer=lines.append)
    _fit(again, epochs=1)
    _fit(again, epochs=5)
    assert again.steps_done == 5


def test_minutes_cap_and_arguments():
    lines = []
    budget = StepBudget(1000, minutes=1e-9, printer=lines.append)
    _fit(budget, epochs=5)
    assert budget.steps_done == 1 and "Time cap" in lines[0]
    with pytest.raises(ValueError, match="total_steps must be a positive integer"):
        StepBudget(0)
    with pytest.raises(ValueError, match="minutes must be positive"):
        StepBudget(10, minutes=0)
    assert format_minutes(40) == "40 s" and format_minutes(600) == "10 min"
    assert format_minutes(3900) == "1 h 05 min"


def test_shapes_command_line_takes_a_step_count():
    args = shapes.build_parser().parse_args(["demo", "--total-steps", "1700", "--steps", "100"])
    assert args.total_steps == 1700 and args.minutes is None

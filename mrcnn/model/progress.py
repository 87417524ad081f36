"""Training for a fixed number of steps, with the time left: :class:`StepBudget`.

A wall-time budget gives a result that depends on the machine (a slow host trains fewer steps and
reaches less); a step budget gives the same training everywhere and only the waiting differs.
:class:`StepBudget` stops training after ``total_steps`` optimizer steps (counted over every
``train`` call it is passed to), prints after the first steps how long the rest will take on this
machine, and at each epoch end the steps done and the time left. An optional ``minutes`` cap
still shortens the run (the last checkpoint is written as always).
"""
import logging
import time

import keras

__all__ = ["StepBudget", "format_minutes"]

logger = logging.getLogger(__name__)


def format_minutes(seconds):
    """``"1 h 05 min"``, ``"12 min"`` or ``"40 s"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class StepBudget(keras.callbacks.Callback):
    """Stop after ``total_steps`` steps; report the expected and the remaining time.

    Args:
        total_steps: training steps in all (> 0).
        minutes: optional wall-time cap (> 0), counted from the first step.
        measure_after: steps excluded from the speed estimate (the first ones trace the graph
            and are much slower); the estimate is printed after ``measure_after + warm``.
        warm: steps timed for the first estimate.
        printer: where the lines go (default ``print``: this is user-facing progress).

    Attributes:
        steps_done: steps finished so far.
        seconds_per_step: the current speed estimate (None before it exists).
    """

    def __init__(self, total_steps, minutes=None, measure_after=2, warm=10, printer=print):
        super().__init__()
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"StepBudget: total_steps must be a positive integer, got "
                             f"{total_steps!r}")
        if minutes is not None and not minutes > 0:
            raise ValueError(f"StepBudget: minutes must be positive or None, got {minutes!r}")
        self.total_steps = total_steps
        self.minutes = minutes
        self.measure_after = int(measure_after)
        self.warm = max(1, int(warm))
        self.printer = printer
        self.steps_done = 0
        self.seconds_per_step = None
        self._start = None
        self._measure_start = None
        self._announced = False

    @property
    def remaining_steps(self):
        return max(0, self.total_steps - self.steps_done)

    def seconds_left(self):
        """Estimated seconds to finish (None before the first estimate)."""
        if self.seconds_per_step is None:
            return None
        left = self.remaining_steps * self.seconds_per_step
        if self.minutes is not None and self._start is not None:
            left = min(left, max(0.0, self.minutes * 60 - (time.monotonic() - self._start)))
        return left

    def on_train_batch_begin(self, batch, logs=None):
        if self._start is None:
            self._start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done += 1
        now = time.monotonic()
        if self.steps_done == self.measure_after:
            self._measure_start = now
        elif self._measure_start is not None and self.steps_done > self.measure_after:
            measured = self.steps_done - self.measure_after
            self.seconds_per_step = (now - self._measure_start) / measured
            if not self._announced and measured >= self.warm:
                self._announced = True
                self.printer(
                    f"\n{self.seconds_per_step:.2f} s per step on this machine: the remaining "
                    f"{self.remaining_steps} of {self.total_steps} steps will take about "
                    f"{format_minutes(self.seconds_left())}")
        if self.steps_done >= self.total_steps:
            self.model.stop_training = True
        elif self.minutes is not None and (now - self._start) / 60.0 >= self.minutes:
            if not self.model.stop_training:
                self.printer(f"\nTime cap of {self.minutes:g} minutes reached after "
                             f"{self.steps_done} of {self.total_steps} steps: stopping")
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        left = self.seconds_left()
        eta = "" if left is None else f", about {format_minutes(left)} left"
        self.printer(f"Epoch {epoch + 1}: {self.steps_done}/{self.total_steps} steps{eta}")

"""CI's learning check: a tiny model trained a fixed number of steps must reach a mAP bound.

A change that breaks learning (a loss sign, a target off by a pixel frame, a frozen layer, a
wrong anchor order) passes every shape and dtype test; this one fails. The step count, data and
seed are fixed, so the result does not depend on the machine's speed; the bound sits below the
worst seed measured with ``scripts/shapes_quality_probe.py`` (docs/benchmarks.md).
"""
import numpy as np
import pytest

from tests.samples.shapes_quality import BOUND, STEPS, train_and_score

pytestmark = pytest.mark.slow


def test_tiny_model_trained_a_fixed_number_of_steps_reaches_the_bound(tmp_path):
    metrics = train_and_score(tmp_path, steps=STEPS, seed=0)
    assert metrics["steps"] == STEPS
    assert np.isfinite(metrics["mAP50"])
    assert metrics["num_detections"] > 0, "the trained model detects nothing"
    assert metrics["mAP50"] >= BOUND, (
        f"classic mAP@0.5 {metrics['mAP50']:.3f} after {STEPS} steps is below {BOUND}: "
        "something stopped the model from learning")

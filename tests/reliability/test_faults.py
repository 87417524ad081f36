"""Fault tests: kill -9 of a training process (also in the middle of a checkpoint write), and
the memory of 500 detect() calls. Figures are in docs/reliability.md."""
import glob
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mrcnn.model.checkpoints import parse_checkpoint_path
from mrcnn.model.weights_io import TEMP_FILE_RE, inspect_weights_file

REPO_ROOT = Path(__file__).resolve().parents[2]

ROUNDS = int(os.environ.get("MRCNN_KILL_ROUNDS", "5"))
# Seconds a child may take to reach its first checkpoint (TensorFlow start-up and tracing); generous
# because the suite runs on a shared 2-core machine.
START_TIMEOUT = float(os.environ.get("MRCNN_KILL_START_TIMEOUT", "1800"))


def _checkpoints(model_dir):
    return sorted(glob.glob(os.path.join(model_dir, "killed*", "mask_rcnn_killed_*.h5")))


def _temp_files(model_dir):
    return [p for p in glob.glob(os.path.join(model_dir, "killed*", ".*"))
            if TEMP_FILE_RE.match(os.path.basename(p))]


def _start(model_dir, slow_writes):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.kill_child", model_dir,
                             "1" if slow_writes else "0"], cwd=str(REPO_ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _wait_for(predicate, process, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_kill_9_at_random_moments_never_loses_or_breaks_a_checkpoint(tmp_path):
    model_dir = str(tmp_path)
    rng = random.Random(12)
    epochs_seen, killed_during_write = [], 0
    for round_index in range(ROUNDS):
        during_write = round_index % 2 == 0
        before = len(_checkpoints(model_dir))
        process = _start(model_dir, slow_writes=during_write)
        try:
            if during_write:
                # Kill while the file of a checkpoint is being written (after one completed).
                marker = os.path.join(model_dir, f"writing-{process.pid}")
                assert _wait_for(lambda: len(_checkpoints(model_dir)) > before, process,
                                 START_TIMEOUT)
                assert _wait_for(lambda: os.path.exists(marker), process, START_TIMEOUT)
                time.sleep(rng.uniform(0.0, 0.5))
            else:
                # Kill at a random moment once training runs, after a checkpoint exists.
                assert _wait_for(lambda: len(_checkpoints(model_dir)) > before, process,
                                 START_TIMEOUT)
                time.sleep(rng.uniform(0.0, 1.5))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert process.returncode == -signal.SIGKILL
        if during_write and _temp_files(model_dir):
            killed_during_write += 1
        # Every checkpoint on disk loads whole; the newest one is what find_last resumes from.
        paths = _checkpoints(model_dir)
        assert paths, "no checkpoint after the round"
        for path in paths:
            assert inspect_weights_file(path) == (True, "ok"), path
        epochs_seen.append(max(parse_checkpoint_path(p)[1] for p in paths))
    assert epochs_seen == sorted(epochs_seen) and epochs_seen[-1] > epochs_seen[0]
    assert len({os.path.dirname(p) for p in _checkpoints(model_dir)}) == 1  # resumed, same run
    assert killed_during_write >= 1  # at least one kill landed inside a write
    # Each start removed the temp files of the writes killed before it (the last kill's may stay).
    leftovers = _temp_files(model_dir)
    assert len(leftovers) <= 1


def _rss_bytes():
    """Anonymous resident memory (heap, allocator pools), where a leak shows. File-backed pages
    (the shared libraries) are left out: they fault in and out with the page cache, which a
    parallel test worker moves (18.9 kB/call of such noise in one xdist run)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    with open("/proc/self/statm") as f:  # kernels without RssAnon: resident minus shared
        fields = f.read().split()
    return (int(fields[1]) - int(fields[2])) * resource.getpagesize()


def test_rss_stays_flat_over_500_detect_calls(tiny_inference):
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for _ in range(50):  # warm-up: tracing, allocator pools
        tiny_inference.detect([image])
    calls, rss = [], []
    for k in range(500):
        tiny_inference.detect([image])
        if k % 25 == 0:
            calls.append(k)
            rss.append(_rss_bytes())
    slope = np.polyfit(calls, rss, 1)[0]  # bytes per call
    growth = rss[-1] - rss[0]
    print(f"RSS {rss[0] / 2**20:.1f} -> {rss[-1] / 2**20:.1f} MiB over 500 detect() calls, "
          f"slope {slope:.0f} bytes/call")
    # A leak of one 64x64x3 float32 molded image per call would be 49 kB/call (24 MiB over
    # the 500 calls); allocator noise is a few kB/call either way.
    assert slope < 16384, f"RSS grows by {slope:.0f} bytes per detect() call"
    assert growth < 8 * 2 ** 20, f"RSS grew by {growth / 2 ** 20:.1f} MiB"

"""Run folders and checkpoints on disk: unique run folders, ``find_last``, leftover temp files.

Layout (classic-compatible)::

    <model_dir>/<name><YYYYMMDDTHHMMSS>[_<k>]/mask_rcnn_<name>_<epoch:04d>.h5

The classic package named run folders to the minute (``<name>YYYYMMDDTHHMM``), so two runs
started in the same minute shared a folder and overwrote each other's checkpoints. Here a run
folder carries the second, and a run that finds its folder taken (another run started in the same
second) adds ``_2``, ``_3`` ...; the folder is created atomically (``os.mkdir``) when training
starts, so two processes never get the same one. Classic folders (minutes only) are still found
and resumed.

:func:`find_last` returns the newest checkpoint that loads whole: files that cannot be opened,
whose checksum differs, or that hold NaN / infinite weights are passed over with a warning.
"""
import datetime
import logging
import os
import re
import time
import warnings

from mrcnn.model.weights_io import TEMP_FILE_RE, inspect_weights_file

__all__ = ["CHECKPOINT_RE", "run_dir_name", "claim_run_dir", "parse_checkpoint_path",
           "find_last_checkpoint", "remove_stale_temp_files", "SkippedCheckpointWarning"]

logger = logging.getLogger(__name__)

# Folder name (classic minutes, optional seconds, optional _k suffix) / checkpoint file name.
_STAMP = r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})?(?:_(\d+))?"
CHECKPOINT_RE = re.compile(
    r"^(?P<dir>.*[/\\](?P<folder>[\w-]+?" + _STAMP + r"))[/\\]mask\_rcnn\_[\w-]+(\d{4})\.h5$")
# Temp files older than this with no pid in their name count as leftovers.
_STALE_SECONDS = 3600


class SkippedCheckpointWarning(UserWarning):
    """find_last passed over a checkpoint that cannot be loaded whole (the message says why)."""


def run_dir_name(name, now=None, suffix=None):
    """``<name><YYYYMMDDTHHMMSS>`` (plus ``_<suffix>``) for a run started at ``now``."""
    now = now or datetime.datetime.now()
    return f"{name}{now:%Y%m%dT%H%M%S}" + (f"_{suffix}" if suffix else "")


def parse_checkpoint_path(path):
    """``(run folder name, next epoch)`` of a classic checkpoint path, or None if it is not one.

    The epoch in the file name counts from 1, Keras from 0: the next epoch to run is that number.
    """
    match = CHECKPOINT_RE.match(os.fspath(path))
    if not match:
        return None
    return match.group("folder"), int(match.group(10))


def claim_run_dir(model_dir, log_dir):
    """Create ``log_dir`` (a fresh run folder) atomically; if taken, ``log_dir_2``, ``_3`` ...

    Returns the folder created. Used for runs that do not resume from a checkpoint, so that no
    run writes into the folder of another one.
    """
    os.makedirs(model_dir, exist_ok=True)
    candidate, k = log_dir, 1
    while True:
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            k += 1
            candidate = f"{log_dir}_{k}"


def _run_sort_key(key, folder):
    match = re.fullmatch(re.escape(key) + _STAMP, folder)
    if not match:
        return (0, "", "", 0, folder)
    g = match.groups()
    return (1, "".join(g[:5]), g[5] or "", int(g[6] or 1), folder)


def _is_other_runs_folder(key, folder):
    """A run folder of another config name that starts with ``key`` (``shapes_cpu2026...`` for
    ``shapes``): the classic prefix match took those too."""
    return (re.fullmatch(re.escape(key) + _STAMP, folder) is None
            and re.fullmatch(r"[\w-]+?" + _STAMP, folder) is not None)


def find_last_checkpoint(model_dir, key):
    """Path of the newest loadable checkpoint of config name ``key`` under ``model_dir``.

    Run folders ``<key><stamp>`` are ordered by their time stamp and suffix (not as strings:
    ``_10`` comes after ``_2``); within a folder, checkpoints by epoch. Newest first, the first
    file that :func:`mrcnn.model.weights_io.inspect_weights_file` accepts is returned; each file
    passed over gets a :class:`SkippedCheckpointWarning` naming it and the reason.

    Raises:
        FileNotFoundError: no ``model_dir``, or no loadable checkpoint of ``key`` in it.
    """
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"Could not find model directory {model_dir}")
    folders = [d for d in next(os.walk(model_dir))[1]
               if d.startswith(key) and not _is_other_runs_folder(key, d)]
    skipped = []
    for folder in sorted(folders, key=lambda d: _run_sort_key(key, d), reverse=True):
        path = os.path.join(model_dir, folder)
        checkpoints = sorted((f for f in next(os.walk(path))[2]
                              if f.startswith("mask_rcnn") and f.endswith(".h5")), reverse=True)
        for name in checkpoints:
            candidate = os.path.join(path, name)
            ok, reason = inspect_weights_file(candidate)
            if ok:
                return candidate
            skipped.append(candidate)
            warnings.warn(f"find_last: passing over {candidate}: {reason}",
                          SkippedCheckpointWarning, stacklevel=3)
    more = f" ({len(skipped)} unusable checkpoint(s) passed over)" if skipped else ""
    raise FileNotFoundError(
        f"Could not find a checkpoint of '{key}' under {model_dir}{more}: expected "
        f"{key}YYYYMMDDTHHMMSS/mask_rcnn_{key}_NNNN.h5")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(model_dir, key):
    """Remove temp files of interrupted checkpoint writes in the run folders of ``key``.

    A temp file (``.<checkpoint>.<pid>-<hex>.tmp``) is a leftover when its writer process is gone
    (or, for names without a pid, when it is older than an hour); files of writers still running
    (another training run) are left alone. Returns the list of removed paths.
    """
    removed = []
    if not os.path.isdir(model_dir):
        return removed
    for folder in next(os.walk(model_dir))[1]:
        if not folder.startswith(key):
            continue
        path = os.path.join(model_dir, folder)
        for name in next(os.walk(path))[2]:
            match = TEMP_FILE_RE.match(name)
            if not match:
                continue
            file_path = os.path.join(path, name)
            pid = match.group("pid")
            if pid is not None:
                stale = int(pid) != os.getpid() and not _pid_alive(int(pid))
            else:
                try:
                    stale = time.time() - os.path.getmtime(file_path) > _STALE_SECONDS
                except OSError:
                    continue
            if stale:
                try:
                    os.remove(file_path)
                except OSError:
                    continue
                removed.append(file_path)
                logger.warning("Removed %s, left by an interrupted checkpoint write", file_path)
    return removed

"""Locating pre-trained weight files: a local file first, the classic download URL second.

Nothing in the package downloads behind the user's back at import time. When a file is needed
(``--weights coco``, ``--weights imagenet``) we look for a local copy, then try the classic URL,
and offline fail with a message that says which file to fetch and how to pass it.
"""
import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

__all__ = ["COCO_MODEL_URL", "COCO_WEIGHTS_FILE", "WeightsUnavailableError", "fetch_weights_file",
           "download_trained_weights", "resolve_coco_weights"]

logger = logging.getLogger(__name__)

COCO_WEIGHTS_FILE = "mask_rcnn_coco.h5"
COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"


class WeightsUnavailableError(FileNotFoundError):
    """A weights file is neither on disk nor downloadable (e.g. offline)."""


def _download(url, destination, timeout=30, verbose=1):
    """Download ``url`` to ``destination`` atomically (temp file + rename)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if verbose:
        logger.info("Downloading %s to %s", url, destination)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=destination.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        os.replace(tmp, destination)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return str(destination)


def fetch_weights_file(filename, url, path=None, env_var=None, search_dirs=(),
                       cache_subdir="models", download=True):
    """Return a local path of a weights file, downloading it only when no local copy exists.

    Looks in order at: ``path`` (must exist if given), ``$env_var``, ``search_dirs/filename``,
    ``~/.keras/<cache_subdir>/filename``. If none exists and ``download`` is true, fetches ``url``
    into the Keras cache folder.

    Raises:
        WeightsUnavailableError: nothing local and the download failed (offline), with a
            message naming the file, the URL and how to pass a local copy.
    """
    if path is not None:
        if not os.path.isfile(path):
            raise WeightsUnavailableError(f"weights file not found: {path}")
        return os.fspath(path)
    candidates = []
    if env_var and os.environ.get(env_var):
        candidates.append(Path(os.environ[env_var]))
    candidates += [Path(d) / filename for d in search_dirs if d]
    cache_dir = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / cache_subdir
    candidates.append(cache_dir / filename)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    hint = (f"Download {url} on a machine with internet access and pass the file's path "
            f"(e.g. --weights /path/to/{filename})")
    if env_var:
        hint += f", set ${env_var}, or copy it to {cache_dir / filename}"
    if not download:
        raise WeightsUnavailableError(f"{filename} is not available locally. {hint}.")
    try:
        return _download(url, cache_dir / filename)
    except OSError as err:  # URLError is an OSError: offline, DNS, refused, timeout
        raise WeightsUnavailableError(
            f"could not download {filename} ({err}). {hint}.") from err


def download_trained_weights(coco_model_path, verbose=1):
    """Download the classic COCO-trained weights to ``coco_model_path`` (classic utils name)."""
    try:
        return _download(COCO_MODEL_URL, coco_model_path, verbose=verbose)
    except OSError as err:
        raise WeightsUnavailableError(
            f"could not download the COCO weights from {COCO_MODEL_URL} ({err}). Download it "
            f"elsewhere and place it at {coco_model_path}, or pass its path.") from err


def resolve_coco_weights(path=None, search_dirs=()):
    """Local path of ``mask_rcnn_coco.h5``: ``path``, ``$MRCNN_COCO_WEIGHTS``, search dirs, cache,
    else the classic download."""
    return fetch_weights_file(COCO_WEIGHTS_FILE, COCO_MODEL_URL, path=path,
                              env_var="MRCNN_COCO_WEIGHTS", search_dirs=search_dirs)

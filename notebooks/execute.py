"""Execute the notebooks from a fresh kernel each, writing copies with their outputs.

``python notebooks/execute.py [--out notebooks/executed] [--quick] [name ...]`` runs the notebooks
(all of them, in :data:`ORDER`, or the named ones) with nbclient, each in a new ``python3``
kernel started in ``notebooks/``, and writes ``<out>/<name>.ipynb`` with the outputs. A cell
error stops that notebook and the command exits with status 1 after the others ran.
``make notebooks`` calls it; the tests in ``tests/notebooks`` use :func:`execute`.
"""
import argparse
import os
import sys
import time
from pathlib import Path

__all__ = ["NOTEBOOK_DIR", "ORDER", "execute", "strip_outputs", "main"]

NOTEBOOK_DIR = Path(__file__).resolve().parent

#: Run order: train_shapes first, so that the shapes notebooks after it reuse its checkpoint.
ORDER = ("train_shapes", "demo", "inspect_data", "inspect_model", "inspect_weights",
         "inspect_nucleus_data", "inspect_nucleus_model", "inspect_balloon_data",
         "inspect_balloon_model")


def execute(name, out_dir=None, quick=False, timeout=900):
    """Run ``notebooks/<name>.ipynb`` from a fresh kernel; returns the executed notebook.

    Args:
        name: notebook name without ``.ipynb``.
        out_dir: folder to write the executed copy to (None: not written).
        quick: set ``MRCNN_NOTEBOOK_QUICK=1`` in the kernel (CI: fewer training steps).
        timeout: seconds allowed per cell.
    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (the message has its traceback).
    """
    import nbformat
    from nbclient import NotebookClient

    path = NOTEBOOK_DIR / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env["MRCNN_NOTEBOOK_QUICK"] = "1" if quick else env.get("MRCNN_NOTEBOOK_QUICK", "0")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("MPLBACKEND", None)  # the inline backend draws the pictures into the outputs
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        # nbclient passes the environment of this process to the kernel.
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, Path(out_dir) / f"{name}.ipynb")
    return notebook


def strip_outputs(notebook):
    """Remove outputs and execution counts in place (the committed form); returns it."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return notebook


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"notebooks to run (default: {' '.join(ORDER)})")
    parser.add_argument("--out", default=str(NOTEBOOK_DIR / "executed"))
    parser.add_argument("--quick", action="store_true", help="CI mode: few training steps")
    args = parser.parse_args(argv)
    failed = []
    for name in args.names or ORDER:
        start = time.time()
        try:
            execute(name, out_dir=args.out, quick=args.quick)
            print(f"{name}: ok in {time.time() - start:.0f} s -> {args.out}/{name}.ipynb",
                  flush=True)
        except Exception as exc:  # noqa: BLE001 - report every notebook, then fail
            failed.append(name)
            print(f"{name}: FAILED after {time.time() - start:.0f} s: "
                  f"{str(exc).splitlines()[-1] if str(exc) else type(exc).__name__}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

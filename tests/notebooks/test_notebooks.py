"""Every notebook runs from a fresh kernel without a cell error (CI mode: few training steps),
and the committed notebooks carry no outputs.

The notebooks run in the order of ``notebooks/execute.py`` (``ORDER``): train_shapes first
writes the shapes checkpoint the shapes notebooks after it reuse; run alone, each notebook trains
its own tiny model first. Checkpoints go to a temporary folder (``MRCNN_NOTEBOOK_LOGS``).
"""
import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def _load(name, module_name):
    spec = importlib.util.spec_from_file_location(module_name, NOTEBOOK_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


execute = _load("execute", "notebook_execute")
nbtools = _load("nbtools", "notebook_nbtools")  # the notebooks' own data paths

EXPECTED = ["demo", "train_shapes", "inspect_data", "inspect_model", "inspect_weights",
            "inspect_nucleus_data", "inspect_nucleus_model", "inspect_balloon_data",
            "inspect_balloon_model"]


def test_the_nine_notebooks_are_there_and_stripped():
    import nbformat

    names = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert names == sorted(EXPECTED)
    assert sorted(execute.ORDER) == sorted(EXPECTED)
    for name in EXPECTED:
        notebook = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        nbformat.validate(notebook)
        for i, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{name}.ipynb cell {i} has outputs: strip them"
                assert cell.execution_count is None, f"{name}.ipynb cell {i} has a count"


@pytest.fixture(scope="module")
def notebook_logs(tmp_path_factory):
    logs = tmp_path_factory.mktemp("notebook_logs")
    saved = os.environ.get("MRCNN_NOTEBOOK_LOGS")
    os.environ["MRCNN_NOTEBOOK_LOGS"] = str(logs)
    yield logs
    if saved is None:
        os.environ.pop("MRCNN_NOTEBOOK_LOGS", None)
    else:
        os.environ["MRCNN_NOTEBOOK_LOGS"] = saved


def _png_count(notebook):
    return sum("image/png" in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", execute.ORDER)
def test_notebook_runs_from_a_fresh_kernel(name, notebook_logs, tmp_path):
    if "nucleus" in name and not nbtools.nucleus_dir().is_dir():
        pytest.skip(f"{name} reads the nucleus data, absent at {nbtools.nucleus_dir()} "
                    "(set MRCNN_NUCLEUS_DIR)")
    notebook = execute.execute(name, out_dir=tmp_path, quick=True)
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors
    # The notebooks are about pictures: each draws several.
    assert _png_count(notebook) >= 2, f"{name} drew {_png_count(notebook)} pictures"

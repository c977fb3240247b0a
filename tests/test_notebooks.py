"""The example notebooks run top to bottom in a fresh kernel, and are committed with their outputs.

Their cells assert a few facts on the way (a saved and reloaded embedding decodes to the same masks;
pycocotools decodes the COCO RLE output to the binary masks), so a run also checks those.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ["predictor_tour.ipynb", "automatic_masks.ipynb", "finetune.ipynb"]
# transformers_guide.ipynb and ssseg_tutorial.ipynb run cell by cell in tests/compat, against their references.


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_without_errors(name: str) -> None:
    path = NOTEBOOK_DIR / name
    notebook = nbformat.read(path, as_version=4)
    # execute() raises CellExecutionError, with the cell and traceback, at the first failing cell.
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    cells = code_cells(notebook)
    assert all(cell.execution_count is not None for cell in cells)
    assert not [output for cell in cells for output in cell.outputs if output.output_type == "error"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_outputs(name: str) -> None:
    path = NOTEBOOK_DIR / name
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert all(cell.execution_count is not None for cell in cells), f"run notebooks/execute.py {name}"
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1)), "cells run out of order"
    assert not [output for cell in cells for output in cell.outputs if output.output_type == "error"]
    figures = [output for cell in cells for output in cell.outputs if "image/png" in output.get("data", {})]
    assert figures, "the executed notebook should show its figures"
    assert path.stat().st_size < 1_000_000

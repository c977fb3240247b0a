"""Re-run the notebooks in place, so that they are committed with fresh outputs.

    .venv/bin/python notebooks/execute.py                                   # every notebook here
    .venv/bin/python notebooks/execute.py notebooks/predictor_tour.ipynb    # just this one

Each notebook runs in a fresh kernel of this interpreter, with the notebook's folder as working
directory, and stops at the first failing cell.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path) -> float:
    """Run every cell of ``path`` and write the outputs back; returns the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    # No per-cell timestamps: they would change every line of the file's metadata on each re-run.
    NotebookClient(notebook, timeout=300, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)
    return time.perf_counter() - started


def main() -> None:
    paths = [Path(arg).resolve() for arg in sys.argv[1:]] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        seconds = execute(path)
        print(f"{path.name}: {seconds:.1f} s, {path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()

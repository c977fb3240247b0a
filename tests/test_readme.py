"""The README as a front door: short, its speed figures taken from the committed benchmark tables, its links
alive, its console-script table complete, and its Python example working as written (after the README's
first command, whose other steps tests/jobs/test_samples.py runs)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from sam_core.cli.samples import main as samples_main
from sam_core.jobs.samples import shapes_scenes

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BENCHMARK_TABLES = [ROOT / "benchmarks" / "results.md", ROOT / "benchmarks" / "speed_modes.md"]


def test_readme_is_short():
    assert len(README.splitlines()) <= 250


def test_speed_figures_are_in_the_committed_tables():
    """Every speed-up (``1.56x``) and every time (``36.2 ms``, ``25.91 s``) the README quotes is a cell of a
    committed benchmark table, and the table's date the README gives is that table's."""
    cells = set()
    for path in BENCHMARK_TABLES:
        for line in path.read_text().splitlines():
            if line.startswith("|"):
                cells.update(cell.strip() for cell in line.strip("|").split("|"))
    quoted = re.findall(r"\d+\.\d+x|\d+(?:\.\d+)? m?s\b", README)
    assert len(quoted) >= 4, "the README's headline quotes the benchmark tables"
    assert not [figure for figure in quoted if figure not in cells]
    dates = re.findall(r"table of (\d{4}-\d{2}-\d{2})", README)
    assert dates and all(date in (ROOT / "benchmarks" / "results.md").read_text() for date in dates)


def test_links_point_into_the_repository():
    targets = re.findall(r"\]\(((?!https?://)[^)#]+)(?:#[^)]*)?\)", README)
    assert any(target.startswith("docs/") for target in targets)
    assert not [target for target in targets if not (ROOT / target).exists()]


def test_console_script_table_lists_every_script():
    # pyproject's [project.scripts] table (tomllib is not in Python 3.10, which sam_core supports)
    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]\n", 1)[1].split("\n\n", 1)[0]
    scripts = re.findall(r"^(sam-[a-z-]+) = ", section, flags=re.MULTILINE)
    assert len(scripts) >= 8
    listed = re.findall(r"^\| `(sam-[a-z-]+)` \|", README, flags=re.MULTILINE)
    assert sorted(listed) == sorted(scripts)


def test_python_example_runs_as_written(tmp_path, monkeypatch):
    """The example, run where the first command ran (the sample folder, the shipped weights): the click finds
    the shape under it, and the overlay is written."""
    example = re.search(r"## In Python\n\n```python\n(.*?)```", README, flags=re.DOTALL).group(1)
    assert len(example.strip().splitlines()) <= 12
    assert samples_main([str(tmp_path / "samples")]) == 0
    os.symlink(ROOT / "weights", tmp_path / "weights")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    scene = next(scene for scene in shapes_scenes() if scene.name == "shapes_square")
    x, y = map(int, re.search(r"point_coords=np.array\(\[\[(\d+), (\d+)\]\]\)", example).groups())
    shape = next(mask for mask in scene.masks if mask[y, x])
    best = namespace["best"]
    assert np.array_equal(best, namespace["masks"][int(np.argmax(namespace["scores"]))])
    assert (best & shape).sum() / (best | shape).sum() > 0.8
    assert (tmp_path / "overlay.png").stat().st_size > 0


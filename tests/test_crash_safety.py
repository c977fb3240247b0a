"""Crash safety of sam-amg: killed with SIGKILL at seeded random moments and run again, it leaves every output
complete and equal to an uninterrupted run's, and no temporary file behind.

Each kill waits for a drawn number of changes in the output folder (a temporary folder or file appearing, a
rename), then a drawn delay of up to 0.2 s, so kills land while the model loads, between images and in the
middle of writing an image's outputs. The model is the 2 MB shapes model on three ``sam-samples`` scenes.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from make_shapes_model import DEFAULT_OUTPUT as SHAPES_WEIGHTS

from sam_core.samples import write_samples

KILLS = 5  # per output format
REPO = Path(__file__).resolve().parents[1]
AMG = "import sys; from sam_core.cli import amg_main; sys.exit(amg_main(sys.argv[1:]))"
OPTIONS = ["--points-per-side", "12", "--pred-iou-thresh", "0.7", "--stability-score-thresh", "0.9",
           "--min-mask-region-area", "100", "--overlay"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    for path in sorted(write_samples(tmp_path_factory.mktemp("samples")))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def start_amg(scenes: Path, output: Path, fmt: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", AMG, "--input", str(scenes), "--output", str(output), "--checkpoint",
               str(SHAPES_WEIGHTS), "--output-format", fmt, *OPTIONS]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def snapshot(folder: Path) -> frozenset[str]:
    """Every path under ``folder`` (hidden temporaries included); robust to entries vanishing mid-walk."""
    found = set()
    for root, dirs, files in os.walk(folder):
        found.update(os.path.join(root, name) for name in dirs + files)
    return frozenset(found)


def kill_after_changes(process: subprocess.Popen, output: Path, changes: int, delay: float) -> bool:
    """SIGKILL ``process`` once ``changes`` changes of the output tree were seen, plus ``delay`` seconds.
    Returns whether it was still running when killed."""
    seen, last = 0, snapshot(output)
    while seen < changes and process.poll() is None:
        time.sleep(0.002)
        current = snapshot(output)
        seen += current != last
        last = current
    time.sleep(delay)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return running


def visible_outputs(folder: Path) -> dict[str, Path]:
    return {str(path.relative_to(folder)): path for path in sorted(folder.rglob("*"))
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)}


def assert_same_outputs(got: Path, expected: Path) -> None:
    """Same files; PNGs decode to the same pixels, CSV and JSON parse to the same rows and records."""
    got_files, expected_files = visible_outputs(got), visible_outputs(expected)
    assert sorted(got_files) == sorted(expected_files)
    for name, path in got_files.items():
        if path.suffix == ".png":
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            assert image is not None, f"{name} does not decode"
            np.testing.assert_array_equal(image, cv2.imread(str(expected_files[name]), cv2.IMREAD_UNCHANGED))
        elif path.suffix == ".csv":
            with open(path, newline="") as mine, open(expected_files[name], newline="") as theirs:
                assert list(csv.reader(mine)) == list(csv.reader(theirs))
        else:
            assert json.loads(path.read_text()) == json.loads(expected_files[name].read_text())
    assert not [path for path in got.rglob(".*")], "temporary files were left behind"


@pytest.mark.parametrize("fmt", ["png", "coco"])
def test_sam_amg_killed_at_random_moments_then_rerun_gives_the_uninterrupted_outputs(scenes, tmp_path, fmt):
    reference = start_amg(scenes, tmp_path / "reference", fmt)
    assert reference.wait() == 0, reference.stderr.read()
    expected = visible_outputs(tmp_path / "reference")
    assert len(expected) >= 6  # three images: mask folders or JSON files, and overlays

    output = tmp_path / "interrupted"
    output.mkdir()
    rng = random.Random(fmt)
    interrupted = 0
    for _ in range(KILLS):
        process = start_amg(scenes, output, fmt)
        interrupted += kill_after_changes(process, output, changes=rng.randint(0, 4), delay=rng.uniform(0.0, 0.2))
    assert interrupted >= KILLS // 2  # the kills did land while sam-amg was working
    final = start_amg(scenes, output, fmt)
    assert final.wait() == 0, final.stderr.read()
    assert_same_outputs(output, tmp_path / "reference")

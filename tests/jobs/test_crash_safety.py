"""Crash safety of sam-amg: killed with SIGKILL at seeded random moments and run again, it leaves every output
complete and equal to an uninterrupted run's, and no temporary file behind.

Kills land at drawn moments: after a drawn delay (while the model loads or masks are computed), the instant
the output folder changes (in the middle of writing an image's outputs, or between two of its outputs), or
while a temporary output exists (the first kill always); every other run has --overwrite, so kills also hit
the replacement of finished outputs. The model is the 2 MB shapes model on three
``sam-samples`` scenes.
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

from sam_core.cli import amg_main
from sam_core.jobs.samples import write_samples

KILLS = 4  # per output format
REPO = Path(__file__).resolve().parents[2]
# Each output is written to a temporary name and renamed into place. The child holds every finished temporary
# for RENAME_HOLD seconds before renaming it (fault injection through os.replace), so that a kill aimed at "a
# temporary exists" lands in that window on a busy machine too, and not only when the scheduler is kind.
RENAME_HOLD = 0.2
AMG = ("import os, sys, time; from sam_core.cli import amg_main; rename = os.replace; "
       f"os.replace = lambda source, target: (time.sleep({RENAME_HOLD}), rename(source, target))[1]; "
       "sys.exit(amg_main(sys.argv[1:]))")
OPTIONS = ["--points-per-side", "12", "--pred-iou-thresh", "0.7", "--stability-score-thresh", "0.9",
           "--min-mask-region-area", "100", "--overlay"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    for path in sorted(write_samples(tmp_path_factory.mktemp("samples")))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def amg_arguments(scenes: Path, output: Path, fmt: str) -> list[str]:
    return ["--input", str(scenes), "--output", str(output), "--checkpoint", str(SHAPES_WEIGHTS), "--output-format",
            fmt, *OPTIONS]


def start_amg(scenes: Path, output: Path, fmt: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", AMG, *amg_arguments(scenes, output, fmt), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def listing(output: Path) -> set[str]:
    return {entry.name for entry in os.scandir(output)}


def temporaries(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith(".")}


def kill(process: subprocess.Popen, output: Path, rng: random.Random, mode: str) -> tuple[bool, bool]:
    """SIGKILL ``process`` at a drawn moment. ``mode``: "delay" waits a drawn time (loading the model, computing
    masks); "change" waits until the output folder changed for the k-th time (k drawn: a temporary output
    appearing, or one renamed into place, just before the next is written); "temporary" waits until a new
    temporary output exists (mid-write). Returns (whether it was still running, whether it was in the middle
    of writing an output)."""
    before = listing(output)
    stale = temporaries(before)  # left by the previous kill, until this run deletes them
    if mode == "delay":
        deadline = time.monotonic() + rng.uniform(0.0, 3.0)
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
    elif mode == "change":
        wanted, seen = rng.randint(1, 4), 0
        while seen < wanted and process.poll() is None:
            time.sleep(0.0005)
            now = listing(output)
            seen += now != before
            before = now
    else:
        while not temporaries(listing(output)) - stale and process.poll() is None:
            time.sleep(0.0005)
    mid_write = bool(temporaries(listing(output)) - stale)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return running, running and mid_write


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
    assert amg_main(amg_arguments(scenes, tmp_path / "reference", fmt)) == 0  # uninterrupted, in this process
    expected = visible_outputs(tmp_path / "reference")
    assert len(expected) >= 6  # three images: mask folders or JSON files, and overlays

    output = tmp_path / "interrupted"
    output.mkdir()
    rng = random.Random(fmt)
    interrupted = mid_write = 0
    for attempt in range(KILLS):
        # Every other run with --overwrite, so that kills also land while finished outputs are being replaced.
        process = start_amg(scenes, output, fmt, *(["--overwrite"] if attempt % 2 else []))
        mode = "temporary" if attempt == 0 else rng.choice(["delay", "change", "temporary"])
        running, writing = kill(process, output, rng, mode)
        interrupted += running
        mid_write += writing
    assert interrupted >= KILLS // 2  # the kills landed while sam-amg was working ...
    assert mid_write >= 1  # ... and at least one while an output was half-written
    final = start_amg(scenes, output, fmt)
    assert final.wait() == 0, final.stderr.read()
    assert_same_outputs(output, tmp_path / "reference")

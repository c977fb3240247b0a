"""``sam-finetune`` on a folder of images and label maps: outputs, the before/after table, resume and refusals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import sam_core
from sam_core.cli.finetune import main
from sam_core.finetune.trainer import BEST, CURVES, LAST, METRICS, STATE
from sam_core.jobs.samples import shapes_training_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "weights" / "sam_vit_tiny_shapes.safetensors"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images/<key>.png and labels/<key>.png (0: background, k: the k-th shape)."""
    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for image in shapes_training_images(5, seed=21):
        labels = np.zeros(image.size, dtype=np.uint8)
        for index, obj in enumerate(image.load_objects(), start=1):
            labels[obj.mask] = index
        cv2.imwrite(str(root / "images" / f"{image.key}.png"), cv2.cvtColor(image.load_image(), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "labels" / f"{image.key}.png"), labels)
    return root


def test_sam_finetune_writes_a_run_and_resumes_it(data: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "run"
    args = ["--model", str(WEIGHTS), "--data", str(data), "--output", str(output), "--steps", "2",
            "--eval-every", "1", "--correction-points", "1", "--val-fraction", "0.2", "--cache-dir",
            str(tmp_path / "cache")]
    assert main(args) == 0
    out = capsys.readouterr()
    assert {path.name for path in output.iterdir()} == {BEST, LAST, STATE, METRICS, CURVES}
    assert "miou_1click" in out.out and "before" in out.out  # the comparison table
    assert "4 images for training, 1 for validation" in out.err
    assert f"sam-convert {output / BEST}" in out.out
    trained = sam_core.load_sam(output / LAST)
    assert trained.config == sam_core.load_sam(WEIGHTS).config
    state = torch.load(output / STATE, weights_only=True)
    assert state["step"] == 2

    assert main(args) == 2  # a run is there: refused without --resume
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume", "--lr", "0.5"]) == 2  # a resumed run keeps its config
    assert "learning_rate" in capsys.readouterr().err
    assert main(args + ["--resume", "--no-compare"]) == 0  # finished already: nothing more to train
    assert "2 steps" in capsys.readouterr().out


def test_bad_input_exits_with_2(tmp_path: Path, capsys) -> None:
    assert main(["--model", str(WEIGHTS), "--data", str(tmp_path / "missing"), "--output", str(tmp_path)]) == 2
    assert "sam-finetune: error" in capsys.readouterr().err


def test_console_script_is_declared() -> None:
    assert 'sam-finetune = "sam_core.cli.finetune:main"' in (ROOT / "pyproject.toml").read_text()

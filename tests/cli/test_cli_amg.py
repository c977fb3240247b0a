"""The sam-amg console script, run in-process on a folder of synthetic images with the tiny shapes model.

The model is weights/sam_vit_tiny_shapes.safetensors (see tests/make_shapes_model.py) saved as a Meta-style
.pth and loaded through --checkpoint; its written masks are compared with AutomaticMaskGenerator's.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from make_shapes_model import DEFAULT_OUTPUT as SHAPES_WEIGHTS
from make_shapes_model import draw_shapes_image
from pycocotools import mask as mask_utils
from safetensors.torch import load_file

from sam_core import AutomaticMaskGenerator, build_sam, load_sam
from sam_core.cli import amg_main
from sam_core.models.edge_sam import TINY_EDGE_SAM

# pycocotools' decode trips a numpy 2 deprecation warning inside the library itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

OPTIONS = {"points_per_side": 4, "pred_iou_thresh": 0.55, "stability_score_thresh": 0.8}
FLAGS = [item for name, value in OPTIONS.items() for item in ("--" + name.replace("_", "-"), str(value))]
IMAGE_NAMES = ("circles.png", "boxes.jpg")


@pytest.fixture(scope="module")
def shapes_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "sam_vit_tiny_shapes.pth"
    torch.save(load_file(str(SHAPES_WEIGHTS)), path)
    return path


@pytest.fixture(scope="module")
def expected_masks(shapes_pth: Path, image_folder: Path) -> dict[str, list[dict]]:
    """What AutomaticMaskGenerator returns for each image as the CLI reads it."""
    generator = AutomaticMaskGenerator(load_sam(shapes_pth), **OPTIONS)
    result = {}
    for name in IMAGE_NAMES:
        image = cv2.cvtColor(cv2.imread(str(image_folder / name)), cv2.COLOR_BGR2RGB)
        result[Path(name).stem] = generator.generate(image)
    assert all(len(records) >= 2 for records in result.values())
    return result


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for seed, name in enumerate(IMAGE_NAMES):
        image, _ = draw_shapes_image(np.random.default_rng(seed + 20), 120 + 30 * seed, 160, n_shapes=5)
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image, ignored")
    return folder


def with_corrupt_file(image_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in IMAGE_NAMES:
        (folder / name).write_bytes((image_folder / name).read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return folder


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = amg_main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_png_masks(folder: Path) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    with open(folder / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    masks = [cv2.imread(str(folder / f"{row['id']}.png"), cv2.IMREAD_UNCHANGED) for row in rows]
    return masks, rows


def test_png_output_with_a_corrupt_file(capsys: pytest.CaptureFixture[str], shapes_pth: Path, image_folder: Path,
                                        tmp_path: Path, expected_masks: dict[str, list[dict]]) -> None:
    folder = with_corrupt_file(image_folder, tmp_path)
    output = tmp_path / "out"
    code, out, err = run(capsys, "--input", folder, "--output", output, "--checkpoint", shapes_pth, "--overlay",
                         *FLAGS)
    assert code == 1
    assert "broken.png" in err and "cannot read" in err
    assert "2 processed" in out and "1 failed" in out
    for stem, records in expected_masks.items():
        masks, rows = read_png_masks(output / stem)
        assert len(masks) == len(rows) == len(records)
        assert list(rows[0]) == ["id", "area", "bbox_x0", "bbox_y0", "bbox_w", "bbox_h", "point_input_x",
                                 "point_input_y", "predicted_iou", "stability_score", "crop_box_x0", "crop_box_y0",
                                 "crop_box_w", "crop_box_h"]
        for mask, row, record in zip(masks, rows, records):
            assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            np.testing.assert_array_equal(mask > 0, record["segmentation"])
            assert int(row["area"]) == record["area"]
            assert [int(row[k]) for k in ("bbox_x0", "bbox_y0", "bbox_w", "bbox_h")] == record["bbox"]
            assert float(row["predicted_iou"]) == pytest.approx(record["predicted_iou"])
        overlay = cv2.imread(str(output / f"{stem}_overlay.png"))
        assert overlay.shape == records[0]["segmentation"].shape + (3,)
    assert not (output / "broken").exists()
    assert not [path for path in output.iterdir() if path.name.startswith(".")], "temporary files left behind"


def test_coco_output(capsys: pytest.CaptureFixture[str], shapes_pth: Path, image_folder: Path, tmp_path: Path,
                     expected_masks: dict[str, list[dict]]) -> None:
    output = tmp_path / "coco"
    code, out, _ = run(capsys, "--input", image_folder, "--output", output, "--checkpoint", shapes_pth,
                       "--model-type", "vit_tiny", "--output-format", "coco", *FLAGS)
    assert code == 0 and "2 processed" in out
    for stem, records in expected_masks.items():
        written = json.loads((output / f"{stem}.json").read_text())
        assert len(written) == len(records)
        for entry, record in zip(written, records):
            np.testing.assert_array_equal(mask_utils.decode(entry["segmentation"]).astype(bool),
                                          record["segmentation"])
            assert {key: value for key, value in entry.items() if key != "segmentation"} == {
                key: value for key, value in record.items() if key != "segmentation"}
    assert sorted(path.name for path in output.iterdir()) == ["boxes.json", "circles.json"]


def test_rerun_skips_and_overwrite_redoes(capsys: pytest.CaptureFixture[str], shapes_pth: Path,
                                          image_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "resume"
    common = ["--input", image_folder, "--output", output, "--checkpoint", shapes_pth, *FLAGS]
    assert run(capsys, *common)[0] == 0
    marker = output / "circles" / "marker"
    marker.write_text("left by an earlier run")
    before = {path.name: path.stat().st_ino for path in output.iterdir()}

    code, out, _ = run(capsys, *common)
    assert code == 0 and "0 processed" in out and "2 skipped" in out
    assert marker.exists()
    assert {path.name: path.stat().st_ino for path in output.iterdir()} == before

    # Asking for an overlay too makes the earlier outputs incomplete: both images are redone.
    code, out, _ = run(capsys, *common, "--overlay")
    assert code == 0 and "2 processed" in out
    assert not marker.exists()
    assert (output / "boxes_overlay.png").exists()

    code, out, _ = run(capsys, *common, "--overwrite")
    assert code == 0 and "2 processed" in out and "0 skipped" in out
    assert output.joinpath("boxes", "metadata.csv").exists()


def test_single_image_input(capsys: pytest.CaptureFixture[str], shapes_pth: Path, image_folder: Path,
                            tmp_path: Path, expected_masks: dict[str, list[dict]]) -> None:
    output = tmp_path / "single"
    code, out, _ = run(capsys, "--input", image_folder / "boxes.jpg", "--output", output, "--checkpoint",
                       shapes_pth, *FLAGS)
    assert code == 0 and "1 images: 1 processed" in out
    masks, _ = read_png_masks(output / "boxes")
    assert len(masks) == len(expected_masks["boxes"])


def test_point_grids_file(capsys: pytest.CaptureFixture[str], shapes_pth: Path, image_folder: Path,
                          tmp_path: Path) -> None:
    grid = np.random.default_rng(5).random((12, 2))
    np.save(tmp_path / "grid.npy", grid)
    thresholds = {key: value for key, value in OPTIONS.items() if key != "points_per_side"}
    flags = [item for name, value in thresholds.items() for item in ("--" + name.replace("_", "-"), str(value))]
    code, _, _ = run(capsys, "--input", image_folder / "circles.png", "--output", tmp_path / "out", "--checkpoint",
                     shapes_pth, "--output-format", "coco", "--point-grids", tmp_path / "grid.npy", *flags)
    assert code == 0
    written = json.loads((tmp_path / "out" / "circles.json").read_text())
    image = cv2.cvtColor(cv2.imread(str(image_folder / "circles.png")), cv2.COLOR_BGR2RGB)
    expected = AutomaticMaskGenerator(load_sam(shapes_pth), points_per_side=None, point_grids=[grid],
                                      output_mode="coco_rle", **thresholds).generate(image)
    assert written == expected
    code, _, err = run(capsys, "--input", image_folder, "--output", tmp_path / "both", "--checkpoint", shapes_pth,
                       "--point-grids", tmp_path / "grid.npy", "--points-per-side", "4")
    assert code == 2 and "not both" in err


def test_bad_model_is_reported(capsys: pytest.CaptureFixture[str], image_folder: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pth"
    code, _, err = run(capsys, "--input", image_folder, "--output", tmp_path / "out", "--checkpoint", missing)
    assert code == 2
    assert "missing.pth" in err


def test_bad_arguments_exit_with_usage(capsys: pytest.CaptureFixture[str], shapes_pth: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        amg_main(["--input", str(tmp_path / "nowhere"), "--output", str(tmp_path), "--checkpoint", str(shapes_pth)])
    assert raised.value.code == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        amg_main(["--input", str(tmp_path), "--output", str(tmp_path / "out")])  # no model
    with pytest.raises(SystemExit):
        amg_main(["--input", str(tmp_path), "--output", str(tmp_path), "--checkpoint", str(shapes_pth)])
    assert "must differ" in capsys.readouterr().err


def test_an_edge_sam_checkpoint(capsys: pytest.CaptureFixture[str], image_folder: Path, tmp_path: Path) -> None:
    """An EdgeSAM file in its own layout (a flat state dict, recognised from its tensor names) through sam-amg:
    the records of AutomaticMaskGenerator on the same model (random weights; filters off so masks survive)."""
    model = build_sam(TINY_EDGE_SAM)
    path = tmp_path / "edge_sam.pth"
    torch.save(model.state_dict(), path)
    options = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    flags = [item for name, value in options.items() for item in ("--" + name.replace("_", "-"), str(value))]
    code, out, _ = run(capsys, "--input", image_folder, "--output", tmp_path / "out", "--checkpoint", path,
                       "--output-format", "coco", *flags)
    assert code == 0 and "2 processed" in out
    loaded = load_sam(path)
    assert loaded.family == "edge_sam"
    for name in IMAGE_NAMES:
        image = cv2.cvtColor(cv2.imread(str(image_folder / name)), cv2.COLOR_BGR2RGB)
        records = AutomaticMaskGenerator(loaded, **options).generate(image)
        written = json.loads((tmp_path / "out" / f"{Path(name).stem}.json").read_text())
        assert len(written) == len(records) > 0
        for entry, record in zip(written, records):
            np.testing.assert_array_equal(mask_utils.decode(entry["segmentation"]).astype(bool),
                                          record["segmentation"])
            assert entry["predicted_iou"] == pytest.approx(record["predicted_iou"])

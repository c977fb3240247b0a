"""Evaluation (sam_core.evaluate, sam-eval): click placement, each protocol, and both model families.

Click placement is checked against a brute-force distance computation; the protocols against stub
predictors whose answers give closed-form IoUs, and against direct ``Predictor.predict`` calls on the shipped
shapes models (SAM and SAM 2).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import sam_core
from sam_core.cli.evaluate import main as eval_main
from sam_core.finetune import AnnotatedImage, AnnotatedObject
from sam_core.finetune.clicks import centre_point, next_click
from sam_core.jobs.samples import draw_shapes_image

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
SAM_WEIGHTS = WEIGHTS / "sam_vit_tiny_shapes.safetensors"
SAM2_WEIGHTS = WEIGHTS / "sam2_hiera_test_shapes.safetensors"


def rectangle(size: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Bool mask of ``size`` (H, W) with pixels x0 <= x < x1, y0 <= y < y1 set."""
    mask = np.zeros(size, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def brute_force_distances(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of every region pixel to the nearest pixel outside it, the image border's outer
    ring included; 0 outside. The nearest outside pixel always touches the region (8-neighbourhood), so only
    those are compared against."""
    padded = np.pad(region, 1)
    grown = cv2.dilate(padded.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    outside = np.argwhere(grown & ~padded) - 1
    inside = np.argwhere(region)
    distances = np.sqrt(((inside[:, None, :] - outside[None, :, :]) ** 2).sum(-1)).min(axis=1)
    result = np.zeros(region.shape)
    result[tuple(inside.T)] = distances
    return result


def brute_force_centre(region: np.ndarray) -> tuple[int, int]:
    distances = brute_force_distances(region)
    y, x = np.argwhere(distances >= distances.max() - 1e-6)[0]
    return int(x), int(y)


# ------------------------------------------------------------------------------------------ click placement

@pytest.mark.parametrize("region", [
    rectangle((30, 50), 5, 3, 46, 12),  # a wide bar: the centre line
    rectangle((30, 50), 0, 0, 20, 30) | rectangle((30, 50), 20, 20, 50, 24),  # L: in the thick part
    rectangle((30, 50), 30, 10, 50, 30),  # touching the right and bottom borders: kept away from them
    cv2.circle(np.zeros((30, 50), np.uint8), (31, 14), 9, 1, -1).astype(bool),
])
def test_centre_point_is_farthest_from_the_boundary(region: np.ndarray) -> None:
    x, y = centre_point(region)
    distances = brute_force_distances(region)
    assert region[y, x]
    assert distances[y, x] == pytest.approx(distances.max(), abs=1e-4)
    assert (x, y) == brute_force_centre(region)


def test_centre_of_a_border_region_is_inside() -> None:
    # 20 x 20 in the bottom-right corner: 10 px from every side when the border counts as boundary (the corner
    # pixel itself would be 20 px from the region's other sides if it did not).
    assert centre_point(rectangle((30, 50), 30, 10, 50, 30)) == (39, 19)


def test_next_click_corrects_the_largest_error() -> None:
    size = (30, 50)
    target = rectangle(size, 5, 5, 45, 25)
    # Misses the right third (false negatives, 13 x 20) and spills above (false positives, 10 x 3).
    prediction = (rectangle(size, 5, 5, 32, 25) | rectangle(size, 10, 2, 20, 5))
    click = next_click(target, prediction)
    assert click is not None and click.positive and click.label == 1
    assert target[click.y, click.x] and not prediction[click.y, click.x]
    assert (click.x, click.y) == brute_force_centre(target & ~prediction)

    # A large spill to the right of a complete object: a negative click in it.
    spill = target | rectangle(size, 45, 0, 50, 30)
    click = next_click(target, spill)
    assert click is not None and not click.positive and click.label == 0
    assert spill[click.y, click.x] and not target[click.y, click.x]

    # Of two missed parts, the larger one is clicked.
    partial = target & ~rectangle(size, 5, 5, 9, 25) & ~rectangle(size, 30, 5, 45, 25)
    click = next_click(target, partial)
    assert click is not None and click.positive and 30 <= click.x < 45

    assert next_click(target, target.copy()) is None


# ------------------------------------------------------------------------------------------ stub predictors

class StubPredictor:
    """Answers with ground-truth pieces, so that every protocol's IoU has a closed form.

    The object is ``parts`` (disjoint masks); a prediction from points holds each part that contains a
    positive click, plus ``spill`` unless a negative click lies in it. Multimask answers add the whole object
    as the second-best-scored mask. A box gives the whole object.
    """

    def __init__(self, parts: list[np.ndarray], spill: np.ndarray, size: tuple[int, int]) -> None:
        self.parts, self.spill, self.size = parts, spill, size
        self.calls: list[dict] = []

    def set_image(self, image: np.ndarray) -> None:
        assert image.shape[:2] == self.size

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        self.calls.append({"points": point_coords, "labels": point_labels, "box": box, "mask_input": mask_input,
                           "multimask": multimask_output})
        whole = np.any(self.parts, axis=0)
        low_res = np.full((1, 8, 8), float(len(self.calls)), np.float32)
        if box is not None:
            return whole[None], np.array([1.0], np.float32), low_res
        positives = [(int(x), int(y)) for (x, y), label in zip(point_coords, point_labels) if label == 1]
        negatives = [(int(x), int(y)) for (x, y), label in zip(point_coords, point_labels) if label == 0]
        mask = np.zeros(self.size, bool)
        for part in self.parts:
            if any(part[y, x] for x, y in positives):
                mask |= part
        if not any(self.spill[y, x] for x, y in negatives):
            mask |= self.spill
        if multimask_output:
            return np.stack([mask, whole, mask]), np.array([0.9, 0.5, 0.1], np.float32), np.repeat(low_res, 3, 0)
        return mask[None], np.array([0.7], np.float32), low_res


def stub_scene() -> tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray]:
    size = (40, 70)  # non-square
    big = rectangle(size, 2, 2, 30, 30)  # 784 px: the centre click lands here
    small = rectangle(size, 40, 5, 66, 25)  # 520 px
    spill = rectangle(size, 30, 33, 60, 39)  # 180 px, smaller than the missed part
    return size, big, small, spill


def test_protocols_on_a_stub_with_closed_form_ious() -> None:
    size, big, small, spill = stub_scene()
    stub = StubPredictor([big, small], spill, size)
    target = big | small
    image = AnnotatedImage.from_arrays("scene", np.zeros((*size, 3), np.uint8), [AnnotatedObject(target)])

    evaluation = sam_core.evaluate(stub, [image], clicks=(1, 2, 3, 5))

    a, b, s = big.sum(), small.sum(), spill.sum()
    (result,) = evaluation.objects
    assert result.iou["1click"] == pytest.approx(a / (a + b + s))
    assert result.iou["1click_oracle"] == 1.0
    assert result.iou["box"] == 1.0
    assert result.iou["2click"] == pytest.approx((a + b) / (a + b + s))
    assert result.iou["3click"] == result.iou["5click"] == 1.0
    assert result.dice["1click"] == pytest.approx(2 * a / (2 * a + b + s))
    assert result.click_ious == pytest.approx([a / (a + b + s), (a + b) / (a + b + s), 1.0, 1.0, 1.0])
    assert (a + b) / (a + b + s) == pytest.approx(1304 / 1484)  # 0.879: reaches 85 % at click 2, 90 % at 3
    assert result.clicks_to == {"noc85": 2, "noc90": 3}

    first, box, second, third = stub.calls  # nothing is asked once the prediction is perfect
    assert first["multimask"] and first["mask_input"] is None and first["labels"].tolist() == [1]
    assert big[int(first["points"][0][1]), int(first["points"][0][0])]
    assert box["box"].tolist() == [2, 2, 65, 29]  # first and last pixel of the object
    assert not second["multimask"] and second["labels"].tolist() == [1, 1]
    assert small[int(second["points"][1][1]), int(second["points"][1][0])]
    assert second["mask_input"].shape == (1, 8, 8) and second["mask_input"][0, 0, 0] == 1.0  # click 1's logits
    assert third["labels"].tolist() == [1, 1, 0] and third["mask_input"][0, 0, 0] == 3.0
    assert spill[int(third["points"][2][1]), int(third["points"][2][0])]

    summary = evaluation.summary
    assert summary["miou_1click"] == result.iou["1click"] and summary["miou_5click"] == 1.0
    assert "miou_4click" not in summary and summary["max_clicks"] == 5
    assert summary["noc85"] == 2 and summary["noc90"] == 3 and summary["noc90_reached"] == 1.0
    predicted = np.array([0.9, 0.5, 0.1, 1.0, 0.7, 0.7])
    real = np.array([a / (a + b + s), 1.0, a / (a + b + s), 1.0, (a + b) / (a + b + s), 1.0])
    assert summary["iou_head_mae"] == pytest.approx(np.abs(predicted - real).mean())
    centred_p, centred_r = predicted - predicted.mean(), real - real.mean()
    pearson = (centred_p * centred_r).sum() / np.sqrt((centred_p ** 2).sum() * (centred_r ** 2).sum())
    assert summary["iou_head_pearson"] == pytest.approx(pearson)


def test_without_mask_feedback_no_logits_are_passed() -> None:
    size, big, small, spill = stub_scene()
    stub = StubPredictor([big, small], spill, size)
    image = AnnotatedImage.from_arrays("scene", np.zeros((*size, 3), np.uint8), [AnnotatedObject(big | small)])
    sam_core.evaluate(stub, [image], clicks=(3,), mask_feedback=False)
    assert all(call["mask_input"] is None for call in stub.calls)


def test_a_perfect_oracle_scores_one_everywhere() -> None:
    size = (36, 52)
    parts = [rectangle(size, 3, 4, 20, 30), cv2.circle(np.zeros(size, np.uint8), (38, 18), 12, 1, -1).astype(bool)]
    images = [AnnotatedImage.from_arrays(f"im{i}", np.zeros((*size, 3), np.uint8), [AnnotatedObject(part)])
              for i, part in enumerate(parts)]

    class Oracle(StubPredictor):
        def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
            self.calls.append({})
            x, y = point_coords[0] if box is None else ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            truth = next(part for part in self.parts if part[int(y), int(x)])
            count = 3 if multimask_output else 1
            return np.repeat(truth[None], count, 0), np.ones(count, np.float32), np.zeros((count, 8, 8), np.float32)

    oracle = Oracle(parts, np.zeros(size, bool), size)
    summary = sam_core.evaluate(oracle, images).summary

    assert summary["num_images"] == 2 and summary["num_objects"] == 2
    for key, value in summary.items():
        if key.startswith(("miou_", "mdice_", "noc85_reached", "noc90_reached")):
            assert value == 1.0, key
    assert summary["noc85"] == summary["noc90"] == 1
    assert summary["iou_head_mae"] == 0.0 and summary["iou_head_pearson"] is None  # constant: undefined
    assert len(oracle.calls) == 4  # the centre click and the box, per object: nothing left to correct


def test_failed_images_are_skipped_or_raised() -> None:
    good = AnnotatedImage.from_arrays("good", np.zeros((20, 30, 3), np.uint8),
                                      [AnnotatedObject(rectangle((20, 30), 2, 2, 12, 12))])

    def unreadable() -> np.ndarray:
        raise OSError("cannot read broken.png")

    broken = AnnotatedImage("broken", unreadable, good.load_objects, (20, 30), 1, "broken.png")
    oracle = StubPredictor([rectangle((20, 30), 2, 2, 12, 12)], np.zeros((20, 30), bool), (20, 30))
    with pytest.raises(OSError, match="broken.png"):
        sam_core.evaluate(oracle, [good, broken])
    evaluation = sam_core.evaluate(oracle, [broken, good], on_error="skip")
    assert evaluation.failed == [("broken", "cannot read broken.png")]
    assert evaluation.summary["num_images"] == 1 and evaluation.summary["num_objects"] == 1


# ------------------------------------------------------------------------------------- the shipped models

def shapes_image(seed: int) -> AnnotatedImage:
    image, masks = draw_shapes_image(np.random.default_rng(seed), 120, 176, n_shapes=3)
    return AnnotatedImage.from_arrays(f"shapes{seed}", image, [AnnotatedObject(mask) for mask in masks])


@pytest.mark.parametrize(("weights", "clicks"), [(SAM_WEIGHTS, (1, 2, 3, 5, 9)), (SAM2_WEIGHTS, (1,))])
def test_one_click_and_box_equal_direct_predictions(weights: Path, clicks: tuple[int, ...]) -> None:
    model = sam_core.load_sam(weights)
    model.train()
    image = shapes_image(11)
    evaluation = sam_core.evaluate(model, [image], clicks=clicks)
    assert model.training  # handed back as it came

    predictor = sam_core.Predictor(model)
    predictor.set_image(image.load_image())
    top_ious, oracle_ious, box_ious = [], [], []
    for result, obj in zip(evaluation.objects, image.load_objects()):
        target = obj.mask
        x, y = brute_force_centre(target)
        masks, scores, _ = predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]),
                                             multimask_output=True)
        ious = [(m & target).sum() / (m | target).sum() for m in masks]
        rows, cols = np.nonzero(target)
        (box_mask,), (box_score,), _ = predictor.predict(box=np.array([cols.min(), rows.min(), cols.max(), rows.max()]),
                                                        multimask_output=False)
        top_ious.append(ious[int(np.argmax(scores))])
        oracle_ious.append(max(ious))
        box_ious.append((box_mask & target).sum() / (box_mask | target).sum())
        assert result.iou["1click"] == pytest.approx(top_ious[-1])
        np.testing.assert_allclose(result.predicted_vs_real[:4],
                                   [*zip(scores.tolist(), ious), (box_score, box_ious[-1])], rtol=1e-6)
        assert result.click_ious[0] == result.iou["1click"] and len(result.click_ious) == clicks[-1]
        for key, target_iou in (("noc85", 0.85), ("noc90", 0.9)):
            reached = [n for n, value in enumerate(result.click_ious, start=1) if value >= target_iou]
            assert result.clicks_to[key] == (reached[0] if reached else None)
    assert len(evaluation.objects) == 3
    assert evaluation.summary["miou_1click"] == pytest.approx(np.mean(top_ious))
    assert evaluation.summary["miou_1click_oracle"] == pytest.approx(np.mean(oracle_ious))
    assert evaluation.summary["miou_box"] == pytest.approx(np.mean(box_ious))
    assert 0.5 < evaluation.summary["miou_1click"] <= evaluation.summary["miou_1click_oracle"]


# ------------------------------------------------------------------------------------- reports and the CLI

SUMMARY_KEYS = ["num_images", "num_objects", "max_clicks", "miou_1click", "miou_1click_oracle", "miou_box",
                "miou_3click", "mdice_1click", "mdice_1click_oracle", "mdice_box", "mdice_3click", "noc85",
                "noc85_reached", "noc90", "noc90_reached", "iou_head_pearson", "iou_head_mae"]


def test_sam_eval_writes_summary_and_per_object_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    image, masks = draw_shapes_image(np.random.default_rng(4), 100, 150, n_shapes=3)
    cv2.imwrite(str(data / "images" / "scene.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    for index, mask in enumerate(masks, start=1):
        cv2.imwrite(str(data / "masks" / f"scene_{index}.png"), mask.astype(np.uint8) * 255)
    cv2.imwrite(str(data / "masks" / "scene_9.png"), np.zeros((100, 150), np.uint8))
    output = tmp_path / "eval"
    args = ["--model", str(SAM_WEIGHTS), "--data", str(data), "--output", str(output), "--clicks", "1", "3"]

    assert eval_main(args) == 0

    summary = json.loads((output / "summary.json").read_text())
    assert list(summary) == SUMMARY_KEYS
    assert summary["num_images"] == 1 and summary["num_objects"] == len(masks) and summary["max_clicks"] == 3
    with open(output / "per_object.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["image", "object", "area", "iou_1click", "iou_1click_oracle", "iou_box", "iou_3click",
                             "dice_1click", "dice_1click_oracle", "dice_box", "dice_3click", "noc85", "noc90"]
    assert [(row["image"], int(row["object"]), int(row["area"])) for row in rows] == [
        ("scene", index, int(mask.sum())) for index, mask in enumerate(masks)]
    assert np.mean([float(row["iou_1click"]) for row in rows]) == pytest.approx(summary["miou_1click"])
    with open(output / "skipped.csv", newline="") as handle:
        assert list(csv.reader(handle)) == [["source", "reason"], [str(data / "masks" / "scene_9.png"), "empty mask"]]
    out = capsys.readouterr().out
    assert "miou_1click" in out and "wrote" in out

    assert eval_main(args) == 0 and "exists; skipped" in capsys.readouterr().out
    assert eval_main([*args[:-3], "--model", str(tmp_path / "missing.pth"), "--overwrite"]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_format_comparison() -> None:
    before = sam_core.Evaluation({"num_objects": 4, "miou_1click": 0.5, "noc85": 6.25, "iou_head_pearson": None}, [])
    after = sam_core.Evaluation({"num_objects": 4, "miou_1click": 0.75, "noc85": 3.0, "iou_head_pearson": 0.5}, [])
    lines = sam_core.format_comparison(before, after).splitlines()
    assert lines[0].split() == ["metric", "before", "after", "change"]
    assert set(lines[1]) == {"-"}
    assert lines[2].split() == ["num_objects", "4", "4", "+0"]
    assert lines[3].split() == ["miou_1click", "0.5000", "0.7500", "+0.2500"]
    assert lines[4].split() == ["noc85", "6.2500", "3.0000", "-3.2500"]
    assert lines[5].split() == ["iou_head_pearson", "-", "0.5000", "-"]

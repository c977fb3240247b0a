"""Evaluation of a promptable model on annotated images with the SAM paper's protocols: centre click (and its
oracle), tight box, N-click interactive correction, clicks to reach an IoU (``noc``), IoU-head calibration.

The protocols in detail: docs/finetune.md (Evaluation)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sam_core.finetune.annotations import AnnotatedImage
from sam_core.finetune.clicks import centre_point, next_click
from sam_core.interface import PromptableSegmenter
from sam_core.io.checkpoints import load_sam
from sam_core.io.files import write_bytes_atomically
from sam_core.pipelines.predictor import Predictor

DEFAULT_CLICKS = (1, 2, 3, 5, 9)
DEFAULT_IOU_TARGETS = (0.85, 0.9)


@dataclass
class ObjectResult:
    """One object's scores.

    Args:
        image: key of its image.
        index: its position among the image's objects.
        area: its pixels.
        iou: protocol (``"1click"``, ``"1click_oracle"``, ``"box"``, ``"2click"``, ...) -> IoU.
        dice: protocol -> Dice coefficient.
        clicks_to: target name (``"noc85"``) -> clicks that reached it, or None if none within the limit.
        click_ious: IoU after each click of the interactive protocol, 1 to ``max(clicks)``.
        predicted_vs_real: (predicted IoU, real IoU) of every mask the model returned for the object.
    """

    image: str
    index: int
    area: int
    iou: dict[str, float]
    dice: dict[str, float]
    clicks_to: dict[str, int | None]
    click_ious: list[float] = field(default_factory=list)
    predicted_vs_real: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Evaluation:
    """What ``evaluate`` returns.

    Args:
        summary: one key per protocol (see ``evaluate`` and docs/finetune.md), plus counts and settings.
        objects: every object's scores.
        failed: (image key, error) for images that could not be evaluated (with ``on_error="skip"``).
    """

    summary: dict[str, Any]
    objects: list[ObjectResult]
    failed: list[tuple[str, str]] = field(default_factory=list)

    def per_object_rows(self) -> list[dict[str, Any]]:
        """One dict per object: image, object, area, ``iou_<protocol>``, ``dice_<protocol>``, ``noc<T>`` (the
        clicks that reached IoU T, None if none did)."""
        return [{"image": result.image, "object": result.index, "area": result.area,
                 **{f"iou_{name}": value for name, value in result.iou.items()},
                 **{f"dice_{name}": value for name, value in result.dice.items()},
                 **result.clicks_to} for result in self.objects]

    def write(self, folder: str | Path) -> None:
        """Write ``summary.json`` and ``per_object.csv`` into ``folder`` (created if needed), each atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(folder / "summary.json", (json.dumps(self.summary, indent=2) + "\n").encode())
        rows = self.per_object_rows()
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["image", "object", "area"])
        writer.writeheader()
        writer.writerows(rows)
        write_bytes_atomically(folder / "per_object.csv", text.getvalue().encode())

    def format(self) -> str:
        """The summary as an aligned two-column table."""
        rows = [(key, _number(value)) for key, value in self.summary.items()]
        width = max(len(key) for key, _ in rows)
        return "\n".join(f"{key:<{width}}  {value:>8}" for key, value in rows)


def evaluate(model_or_predictor: PromptableSegmenter | Predictor | str | Path, images: Sequence[AnnotatedImage], *,
             clicks: Sequence[int] = DEFAULT_CLICKS, iou_targets: Sequence[float] = DEFAULT_IOU_TARGETS,
             mask_feedback: bool = True, on_error: str = "raise", progress: bool = False) -> Evaluation:
    """Score a model on every object of ``images`` with the SAM paper's protocols (docs/finetune.md):
    ``1click`` (one click at the object's centre, the top-predicted of three masks) and ``1click_oracle`` (the
    best of the three), ``box`` (its tight box, one mask), ``{N}click`` (N - 1 corrective clicks at the centre of
    the largest error region), ``noc{T}`` (clicks to reach IoU T) and the IoU head's calibration.

    Args:
        model_or_predictor (PromptableSegmenter, Predictor, str or Path): A model (wrapped in a ``Predictor``
            with its defaults; a model in training mode is evaluated in eval mode and handed back in training
            mode), a ``Predictor`` (or an object with its ``set_image`` and ``predict``; its set image is
            replaced), or anything ``sam_core.load_sam`` loads.
        images (sequence of AnnotatedImage): Annotated images, e.g. ``read_training_data(...).images``; each
            object's mask an (H, W) bool array.
        clicks (sequence of int): The click counts N to report ``miou_{N}click`` for, each >= 1 (default
            1, 2, 3, 5, 9); ``max(clicks)`` clicks are simulated.
        iou_targets (sequence of float): IoUs in (0, 1] whose number of clicks (``noc``) is reported (default
            0.85, 0.9).
        mask_feedback (bool): Feed the previous prediction's low-res logits back as ``mask_input`` from the
            second click on (the default, as SAM's interactive training does); False prompts with the clicks
            only.
        on_error (str): ``"raise"`` (default), or ``"skip"`` to record an image that fails to load or predict
            (``OSError``, ``ValueError``, ``RuntimeError``) in ``Evaluation.failed`` and go on.
        progress (bool): Show a progress bar on stderr (default False).

    Returns:
        (Evaluation): ``summary``, a dict with ``num_images``, ``num_objects``, ``max_clicks`` (int), the mean
            IoU ``miou_<protocol>`` and Dice ``mdice_<protocol>`` of each protocol (float, None without
            objects), ``noc<T>`` and ``noc<T>_reached`` (float), ``iou_head_pearson`` and ``iou_head_mae``
            (float or None); ``objects``, one ``ObjectResult`` per object; ``failed``, (image key, error)
            pairs.

    Raises:
        ValueError: If ``clicks`` is empty or holds a count < 1, an IoU target is outside (0, 1], or
            ``on_error`` is neither ``"raise"`` nor ``"skip"``.
        TypeError: If ``model_or_predictor`` is none of the accepted kinds.
        CheckpointError: If a checkpoint given by name or path cannot be loaded.
    """
    clicks = sorted({int(n) for n in clicks})
    if not clicks or clicks[0] < 1:
        raise ValueError(f"clicks must be positive click counts, got {clicks}")
    if not all(0.0 < target <= 1.0 for target in iou_targets):
        raise ValueError(f"iou_targets must lie in (0, 1], got {list(iou_targets)}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    predictor = _as_predictor(model_or_predictor)
    model = getattr(predictor, "model", None)
    was_training = isinstance(model, PromptableSegmenter) and model.training
    if was_training:
        model.eval()
    scorer = _ObjectScorer(predictor, clicks, iou_targets, mask_feedback)
    results: list[ObjectResult] = []
    failed: list[tuple[str, str]] = []
    try:
        for image in tqdm(images, desc="evaluate", unit="image", disable=not progress):
            try:
                objects = image.load_objects()
                predictor.set_image(image.load_image())
                scored = [scorer.score(image.key, index, obj.mask) for index, obj in enumerate(objects)]
            except (OSError, ValueError, RuntimeError) as error:
                if on_error == "raise":
                    raise
                failed.append((image.key, str(error)))
                continue
            results += scored
    finally:
        if was_training:
            model.train()
    summary = _summarise(results, clicks, list(scorer.iou_targets), len(images) - len(failed))
    return Evaluation(summary, results, failed)


def _as_predictor(source: Any) -> Any:
    if isinstance(source, PromptableSegmenter):
        return Predictor(source)
    if isinstance(source, (str, Path)):
        return Predictor(load_sam(source))
    if not (hasattr(source, "set_image") and hasattr(source, "predict")):
        raise TypeError(f"expected a model, a Predictor or a checkpoint, got {type(source).__name__}")
    return source


class _ObjectScorer:
    """Runs every protocol on one object of the image set in the predictor."""

    def __init__(self, predictor: Any, clicks: list[int], iou_targets: Sequence[float], mask_feedback: bool) -> None:
        self.predictor = predictor
        self.clicks = clicks
        self.iou_targets = {_noc_key(target): target for target in iou_targets}
        self.mask_feedback = mask_feedback

    def score(self, image_key: str, index: int, target: np.ndarray) -> ObjectResult:
        iou, dice = {}, {}
        pairs: list[tuple[float, float]] = []  # (predicted IoU, real IoU)
        x, y = centre_point(target)
        points, labels = [(x, y)], [1]
        masks, scores, low_res = self._predict(points, labels, None, None, multimask=True)
        ious = [_scored(mask, target, score, pairs) for mask, score in zip(masks, scores)]
        top, oracle = int(np.argmax(scores)), int(np.argmax(ious))
        iou["1click"], dice["1click"] = ious[top], mask_dice(masks[top], target)
        iou["1click_oracle"], dice["1click_oracle"] = ious[oracle], mask_dice(masks[oracle], target)

        box_masks, box_scores, _ = self._predict(None, None, _tight_box(target), None, multimask=False)
        iou["box"] = _scored(box_masks[0], target, box_scores[0], pairs)
        dice["box"] = mask_dice(box_masks[0], target)

        current, logits = masks[top], low_res[top]
        per_click = [(iou["1click"], dice["1click"])]
        while len(per_click) < self.clicks[-1]:
            click = next_click(target, current)
            if click is None:  # perfect already: further clicks change nothing
                per_click.append(per_click[-1])
                continue
            points.append((click.x, click.y))
            labels.append(click.label)
            feedback = logits[None] if self.mask_feedback else None
            new_masks, new_scores, new_low_res = self._predict(points, labels, None, feedback, multimask=False)
            current, logits = new_masks[0], new_low_res[0]
            per_click.append((_scored(current, target, new_scores[0], pairs), mask_dice(current, target)))
        for count in (n for n in self.clicks if n > 1):
            iou[f"{count}click"], dice[f"{count}click"] = per_click[count - 1]
        click_ious = [value for value, _ in per_click]
        clicks_to = {key: next((n for n, value in enumerate(click_ious, start=1) if value >= target), None)
                     for key, target in self.iou_targets.items()}
        return ObjectResult(image_key, index, int(np.count_nonzero(target)), iou, dice, clicks_to, click_ious, pairs)

    def _predict(self, points, labels, box, mask_input, multimask: bool):
        return self.predictor.predict(
            point_coords=None if points is None else np.asarray(points, dtype=np.float32),
            point_labels=None if labels is None else np.asarray(labels, dtype=np.int64),
            box=None if box is None else np.asarray(box, dtype=np.float32),
            mask_input=mask_input, multimask_output=multimask)


def _scored(mask: np.ndarray, target: np.ndarray, predicted: float, pairs: list[tuple[float, float]]) -> float:
    """The IoU of ``mask``, noted with the model's prediction of it in ``pairs``."""
    value = mask_iou(mask, target)
    pairs.append((float(predicted), value))
    return value


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def mask_iou(prediction: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two bool masks (1 when both are empty)."""
    union = np.count_nonzero(prediction | target)
    return float(np.count_nonzero(prediction & target) / union) if union else 1.0


def mask_dice(prediction: np.ndarray, target: np.ndarray) -> float:
    """Dice coefficient 2|A n B| / (|A| + |B|) of two bool masks (1 when both are empty)."""
    total = np.count_nonzero(prediction) + np.count_nonzero(target)
    return float(2 * np.count_nonzero(prediction & target) / total) if total else 1.0


def _noc_key(target: float) -> str:
    return f"noc{round(target * 100)}"


def _summarise(results: list[ObjectResult], clicks: list[int], noc_keys: list[str], num_images: int) -> dict[str, Any]:
    max_clicks = clicks[-1]
    protocols = ["1click", "1click_oracle", "box", *(f"{n}click" for n in clicks if n > 1)]
    summary: dict[str, Any] = {"num_images": num_images, "num_objects": len(results), "max_clicks": max_clicks}
    for kind, per_object in (("miou", "iou"), ("mdice", "dice")):
        for name in protocols:
            summary[f"{kind}_{name}"] = _mean([getattr(result, per_object)[name] for result in results])
    for key in noc_keys:
        needed = [result.clicks_to[key] for result in results]
        summary[key] = _mean([max_clicks if n is None else n for n in needed])
        summary[f"{key}_reached"] = _mean([n is not None for n in needed])
    pairs = [pair for result in results for pair in result.predicted_vs_real]
    predicted = np.array([pair[0] for pair in pairs], dtype=np.float64)
    real = np.array([pair[1] for pair in pairs], dtype=np.float64)
    summary["iou_head_pearson"] = _pearson(predicted, real)
    summary["iou_head_mae"] = _mean(np.abs(predicted - real).tolist())
    return summary


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation, or None where it is undefined (fewer than two pairs, or a constant side)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    value = float(np.corrcoef(a, b)[0, 1])
    return value if math.isfinite(value) else None


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_comparison(before: Evaluation, after: Evaluation) -> str:
    """A table of every summary value before and after (e.g. fine-tuning), with the change.

    For ``noc*`` and ``iou_head_mae`` lower is better; for the other scores higher is better.
    """
    keys = list(before.summary) + [key for key in after.summary if key not in before.summary]
    rows = [("metric", "before", "after", "change")]
    for key in keys:
        old, new = before.summary.get(key), after.summary.get(key)
        change = "-"
        if isinstance(old, (int, float)) and isinstance(new, (int, float)):
            change = f"{new - old:+d}" if isinstance(new - old, int) else f"{new - old:+.4f}"
        rows.append((key, _number(old), _number(new), change))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [f"{row[0]:<{widths[0]}}  " + "  ".join(f"{cell:>{width}}" for cell, width in zip(row[1:], widths[1:]))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)

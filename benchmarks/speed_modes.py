"""Opt-in speed modes against sam_core's exact path: encoder speed-up and mask agreement.

    .venv/bin/python benchmarks/speed_modes.py [--image photo.jpg]

Modes: int8 dynamic quantisation of the encoder's linear layers (``sam_core.quantize_encoder_int8``), and the
whole model in bfloat16 (``load_sam(..., dtype=torch.bfloat16)``).
Agreement is the IoU between each mode's mask and the exact path's mask for the same prompt (the best of the
three multimask outputs), for a 4x4 grid of point prompts, on random vit_b weights and on the small
prompt-sensitive shapes model shipped in weights/.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import sam_core
from sam_core.models.sam.parity import make_hf_sam
from sam_core.runtime import keep_freed_memory_by_default

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench import DEFAULT_IMAGE, image_path, load_rgb  # noqa: E402
from make_shapes_model import DEFAULT_OUTPUT as SHAPES_WEIGHTS  # noqa: E402
from make_shapes_model import draw_shapes_image  # noqa: E402


def encoder_seconds(sam: sam_core.Sam, image: torch.Tensor, runs: int) -> list[float]:
    sam.image_encoder(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sam.image_encoder(image)
        times.append(time.perf_counter() - start)
    return times


def best_masks(predictor: sam_core.Predictor, points: np.ndarray) -> list[np.ndarray]:
    masks = []
    for point in points:
        candidates, scores, _ = predictor.predict(point[None], np.array([1]))
        masks.append(candidates[scores.argmax()])
    return masks


def mean_and_min_iou(first: list[np.ndarray], second: list[np.ndarray]) -> tuple[float, float]:
    ious = [((a & b).sum() / max((a | b).sum(), 1)) for a, b in zip(first, second)]
    return float(np.mean(ious)), float(np.min(ious))


def grid_points(height: int, width: int) -> np.ndarray:
    return np.array([[(i + 0.5) * width / 4, (j + 0.5) * height / 4] for j in range(4) for i in range(4)])


# Each mode: (name, a function turning the path of a checkpoint into the model that mode runs).
MODES: list[tuple[str, Callable[[str | Path], sam_core.Sam]]] = [
    ("int8 encoder linears", lambda path: sam_core.quantize_encoder_int8(sam_core.load_sam(path))),
    ("bf16 weights and activations", lambda path: sam_core.load_sam(path, dtype=torch.bfloat16)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE, type=image_path,
                        help="the photo (default: scikit-image's chelsea at 1800x1200)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    keep_freed_memory_by_default()  # as sam-amg does
    photo = load_rgb(args.image)
    shapes, _ = draw_shapes_image(np.random.default_rng(4), 300, 400, n_shapes=6)

    with tempfile.TemporaryDirectory() as tmp:
        make_hf_sam("vit_b", seed=0).save_pretrained(tmp)
        exact = sam_core.load_sam(tmp)
        modes = [(name, make(tmp), make(SHAPES_WEIGHTS)) for name, make in MODES]
    pixels = exact.preprocess(torch.rand(1, 3, 1024, 1024) * 255)
    times: dict[str, list[float]] = {name: [] for name in ["exact (default)"] + [m[0] for m in modes]}
    for _ in range(args.runs):  # interleaved, against drifts in the machine's speed
        times["exact (default)"] += encoder_seconds(exact, pixels, 1)
        for name, model, _ in modes:
            times[name] += encoder_seconds(model, pixels.to(model.dtype), 1)

    exact_shapes = sam_core.load_sam(SHAPES_WEIGHTS)
    exact_median = statistics.median(times["exact (default)"])
    print(f"# speed modes: torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.runs}\n")
    print("| mode | vit_b encoder | speed-up | mask IoU vs exact (mean / min, 16 prompts) |")
    print("|---|---|---|---|")
    print(f"| exact (default) | {exact_median:.2f} s | 1.00x | 1 / 1 |")
    for name, model, shapes_model in modes:
        ious = []
        for label, exact_model, approximate_model, image in [("vit_b (random weights)", exact, model, photo),
                                                             ("vit_tiny shapes model", exact_shapes,
                                                              shapes_model, shapes)]:
            points = grid_points(*image.shape[:2])
            reference, approximate = sam_core.Predictor(exact_model), sam_core.Predictor(approximate_model)
            reference.set_image(image)
            approximate.set_image(image)
            mean, worst = mean_and_min_iou(best_masks(reference, points), best_masks(approximate, points))
            ious.append(f"{label}: {mean:.3f} / {worst:.3f}")
        median = statistics.median(times[name])
        print(f"| {name} | {median:.2f} s | {exact_median / median:.2f}x | {'; '.join(ious)} |", flush=True)


if __name__ == "__main__":
    main()

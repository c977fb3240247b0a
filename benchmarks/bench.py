"""Benchmark sam_core against Meta's reference and transformers' SamModel on identical weights.

    .venv/bin/python benchmarks/bench.py [--image photo.jpg]

One run of this script builds one set of random vit_b weights (in the Hugging Face format, loaded by
sam_core, whose state dict then loads into the reference), then measures every (task, implementation) pair in
fresh subprocesses so that peak RSS is per pair, interleaving the ``--runs`` repeats across implementations.
Encoder and predict timings follow one warm-up call; AMG runs are long enough to need none. Medians are
printed. The AMG rows also check that sam_core's mask set equals the reference's (count, matched IoU).
The ``sam2_*`` rows do the same for SAM 2.1 Hiera-T and Hiera-S (random weights in transformers' Sam2Model
format), against Meta's ``sam2`` package (``SAM2ImagePredictor``) and transformers' ``Sam2Model``.
``sam_core`` runs as its entry points (Predictor, AutomaticMaskGenerator, sam-amg) set the process up, with
the allocator setting on; ``sam_core, allocator setting off`` runs with SAM_CORE_KEEP_FREED_MEMORY=0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from sam_core.runtime import ALLOCATOR_ENV, keep_freed_memory_by_default

TASKS = ("encoder", "predict", "amg32", "amg16", "amg32_all", "amg16_all", "amg16_every", "sam2_tiny_encoder",
         "sam2_tiny_predict", "sam2_small_encoder", "sam2_small_predict")
TASK_MODELS = {"sam2_tiny": "sam2.1_hiera_tiny", "sam2_small": "sam2.1_hiera_small"}
ALLOCATOR_OFF = "sam_core, allocator setting off"
IMPLEMENTATIONS = ("reference", "transformers", "sam_core", ALLOCATOR_OFF)
PREDICT_CALLS = 20


DEFAULT_IMAGE = "chelsea"
"""``--image``'s default: scikit-image's ``chelsea`` photo at truck.jpg's size (1800x1200), so that every benchmark
runs on any clone (scikit-image comes with the test extra). docs/benchmarks.md's tables name the image they
measured."""


def image_path(value: str) -> str:
    """``--image``'s type: a file path as given; ``DEFAULT_IMAGE``: that photo, written once to the temporary
    folder."""
    if value != DEFAULT_IMAGE:
        return value
    path = Path(tempfile.gettempdir()) / "sam_core_bench_chelsea_1800x1200.png"
    if not path.is_file():
        from skimage import data

        photo = cv2.resize(data.chelsea(), (1800, 1200), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    return str(path)


def load_rgb(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def task_model(task: str) -> str:
    """The registry name of the model a task runs: vit_b, or the SAM 2 model of a ``sam2_*`` task."""
    return next((name for prefix, name in TASK_MODELS.items() if task.startswith(prefix + "_")), "vit_b")


def make_weights(model_type: str, directory: Path) -> Path:
    """Random transformers SamModel / Sam2Model weights (save_pretrained) with every tensor perturbed away
    from its init."""
    hf_dir = directory / f"hf-{model_type}"
    if model_type.startswith("sam2"):
        from sam_core.models.sam2 import SAM2_CONFIGS
        from sam_core.models.sam2.parity import make_hf_sam2

        make_hf_sam2(SAM2_CONFIGS[model_type], seed=0).save_pretrained(hf_dir)
    else:
        from sam_core.models.sam.parity import make_hf_sam

        make_hf_sam(model_type, seed=0).save_pretrained(hf_dir)
    return hf_dir


def timed(function: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    function()  # warm-up: allocator, kernels, caches
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def time_generator(generator: Any, image: np.ndarray, runs: int) -> tuple[list[float], list]:
    """Seconds of ``runs`` ``generator.generate(image)`` calls, without a warm-up (one run is long enough to
    amortise first-call costs), and the last run's masks."""
    times, records = [], []
    for _ in range(runs):
        start = time.perf_counter()
        records = generator.generate(image)
        times.append(time.perf_counter() - start)
    return times, [record["segmentation"] for record in records]


def write_result(out: Path, times: list[float], masks: list | None = None) -> None:
    """A worker's result file: its times, its peak RSS and, for generator tasks, its masks."""
    result: dict[str, Any] = {"times": times, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if masks is not None:
        result["masks"] = masks
    out.write_text(json.dumps(result))


def worker_parser(description: str, worker_fields: tuple[str, ...]) -> argparse.ArgumentParser:
    """The options every benchmark script takes: the image, the runs, and the hidden ones of its workers."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--image", default=DEFAULT_IMAGE, type=image_path,
                        help="the photo (default: scikit-image's chelsea at 1800x1200)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", nargs=len(worker_fields), metavar=worker_fields, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser


def worker(task: str, implementation: str, hf_dir: Path, image_path: str, runs: int, out: Path) -> None:
    import sam_core
    from sam_core.models.sam.parity import make_reference_sam_from

    torch.set_grad_enabled(False)
    if implementation.startswith("sam_core"):
        if implementation == ALLOCATOR_OFF:
            os.environ[ALLOCATOR_ENV] = "0"
        keep_freed_memory_by_default()  # what sam-amg does first
        implementation = "sam_core"
    image = load_rgb(image_path)
    ours = sam_core.load_sam(hf_dir)
    point = np.array([[image.shape[1] * 0.45, image.shape[0] * 0.55]])
    label = np.array([1])
    if task.startswith("sam2_"):
        write_result(out, _sam2_worker(task, implementation, ours, hf_dir, image, point, label, runs))
        return
    if implementation == "sam_core":
        model: Any = ours
    elif implementation == "reference":
        model = make_reference_sam_from(ours)
    else:
        from transformers import SamModel

        model = SamModel.from_pretrained(hf_dir).eval()
        del ours

    masks = None
    if task == "encoder":
        transform = sam_core.ResizeLongestSide(1024)
        pixels = torch.as_tensor(transform.apply_image(image)).permute(2, 0, 1)[None].float()
        prepared = sam_core.build_sam("vit_b").preprocess(pixels)
        encode = {"sam_core": getattr(model, "encode", None), "reference": getattr(model, "image_encoder", None),
                  "transformers": getattr(model, "get_image_embeddings", None)}[implementation]
        times, _ = timed(lambda: encode(prepared), runs)
    elif task == "predict":
        if implementation == "transformers":
            raise SystemExit("not measured")
        predictor_class = sam_core.Predictor if implementation == "sam_core" else _reference_predictor()
        predictor = predictor_class(model)
        predictor.set_image(image)
        calls, _ = timed(lambda: predictor.predict(point_coords=point, point_labels=label), PREDICT_CALLS)
        times = calls
    else:
        if implementation == "transformers":
            raise SystemExit("not measured")
        options = amg_options(task)
        if implementation == "sam_core":
            generator = sam_core.AutomaticMaskGenerator(model, **options)
        else:
            from segment_anything import SamAutomaticMaskGenerator

            generator = SamAutomaticMaskGenerator(model, **options)
        times, masks = time_generator(generator, image, runs)
    write_result(out, times, masks)


def amg_options(task: str) -> dict[str, Any]:
    """Generator options of an ``amgN`` task (the reference's defaults), ``amgN_all`` (quality filters off,
    so that every mask is post-processed, as many are with trained weights) or ``amgN_every`` (NMS off too:
    every mask of every point is kept, encoded and returned, where random weights leave NMS one mask)."""
    points, _, variant = task.removeprefix("amg").partition("_")
    options: dict[str, Any] = {"points_per_side": int(points), "output_mode": "coco_rle"}
    if variant in ("all", "every"):
        options.update(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    if variant == "every":
        options.update(box_nms_thresh=1.0)
    return options


def _sam2_worker(task: str, implementation: str, ours: Any, hf_dir: Path, image: np.ndarray, point: np.ndarray,
                 label: np.ndarray, runs: int) -> list[float]:
    """Encoder or predict timings of one implementation for a SAM 2 task."""
    import sam_core

    # The task model's own preprocessing (Meta's resize to its input size and normalisation), made before
    # the sam_core model is dropped for another implementation.
    prepared = ours.preprocess(torch.as_tensor(image).permute(2, 0, 1)[None])
    if implementation == "sam_core":
        model: Any = ours
    elif implementation == "reference":
        from sam_core.models.sam2.parity import make_reference_sam2

        model = make_reference_sam2(ours.config)
        model.load_state_dict(ours.state_dict(), strict=False)  # the video-only tensors stay random
        del ours
    else:
        from transformers import Sam2Model

        model = Sam2Model.from_pretrained(hf_dir).eval()
        del ours
    if task.endswith("_encoder"):
        if implementation == "sam_core":
            encode = model.encode
        elif implementation == "reference":
            from sam_core.models.sam2.parity import reference_image_features

            def encode(images: torch.Tensor) -> Any:
                return reference_image_features(model, images)
        else:
            encode = model.get_image_embeddings
        times, _ = timed(lambda: encode(prepared), runs)
        return times
    if implementation == "transformers":
        raise SystemExit("not measured")
    if implementation == "sam_core":
        predictor = sam_core.Predictor(model)
    else:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        predictor = SAM2ImagePredictor(model)
    predictor.set_image(image)
    calls, _ = timed(lambda: predictor.predict(point_coords=point, point_labels=label), PREDICT_CALLS)
    return calls


def _reference_predictor() -> type:
    from segment_anything import SamPredictor

    return SamPredictor


def _coco_bytes(rle: dict) -> dict:
    """A copy of a COCO RLE with ``counts`` as bytes, as pycocotools reads it."""
    counts = rle["counts"]
    return {**rle, "counts": counts.encode() if isinstance(counts, str) else counts}


def count_masks(count: int) -> str:
    return f"{count} mask" if count == 1 else f"{count} masks"


def compare_mask_sets(ours: list[dict], reference: list[dict]) -> str:
    """'identical' when counts match and each sam_core mask has an IoU >= 0.99 with the reference mask at its
    place in the output (records come in the same order) or a few places away, saying how many are
    bit-identical at their place."""
    from pycocotools import mask as mask_utils

    if len(ours) != len(reference):
        return f"{len(ours)} vs {count_masks(len(reference))}"
    if not ours:
        return "identical (0 masks)"
    differing = [i for i, (a, b) in enumerate(zip(ours, reference)) if a != b]
    if not differing:
        return f"identical ({count_masks(len(ours))}, all bit-identical)"
    ours, reference = [_coco_bytes(rle) for rle in ours], [_coco_bytes(rle) for rle in reference]

    def best_iou(i: int) -> float:
        # Masks whose scores tie up to float rounding may trade places: look a few places either side.
        near = reference[max(0, i - 3):i + 4]
        return float(np.asarray(mask_utils.iou([ours[i]], near, [0] * len(near))).max())

    worst = min(best_iou(i) for i in differing)
    detail = f"{len(ours) - len(differing)} bit-identical, the others min IoU {worst:.6f}"
    return f"identical ({count_masks(len(ours))}, {detail})" if worst >= 0.99 else f"{count_masks(len(ours))}, {detail}"


def measure(script: str, task: str, implementations: list[str], weights: Path, image_path: str, runs: int,
            tmp: Path, worker_args: list[str] | None = None, label: str | None = None) -> None:
    """Measure ``task`` for each implementation in fresh ``script --worker ARGS IMPL`` processes (ARGS:
    ``worker_args``, default the task) and print its rows, which start with ``label`` (default the task).

    Repeats are interleaved across implementations, each in a fresh process, so that drifts in the machine's
    speed hit all of them alike; peak RSS is the largest seen over the repeats.
    """
    worker_args = worker_args or [task]
    label = label or task
    results: dict[str, dict] = {}
    for _ in range(runs):
        for implementation in implementations:
            out = tmp / f"{'-'.join(worker_args)}-{implementation}.json"
            out.unlink(missing_ok=True)
            command = [sys.executable, script, "--worker", *worker_args, implementation, "--weights", str(weights),
                       "--image", image_path, "--runs", "1", "--out", str(out)]
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode != 0 or not out.exists():
                print(f"# {label} {implementation} failed: {completed.stderr.strip()[-300:]}")
                continue
            result = json.loads(out.read_text())
            merged = results.setdefault(implementation, {"times": [], "peak_rss_mb": 0.0})
            merged["times"] += result["times"]
            merged["peak_rss_mb"] = max(merged["peak_rss_mb"], result["peak_rss_mb"])
            if "masks" in result:
                merged["masks"] = result["masks"]
    reference_time = statistics.median(results["reference"]["times"]) if "reference" in results else None
    for implementation, result in results.items():
        median = statistics.median(result["times"])
        unit = f"{median * 1000:.1f} ms" if median < 1 else f"{median:.2f} s"
        ratio = f"{reference_time / median:.2f}x" if reference_time else "-"
        output = ""
        if "masks" in result:
            output = count_masks(len(result["masks"]))
            if implementation != "reference" and "reference" in results:
                output = compare_mask_sets(result["masks"], results["reference"]["masks"])
        print(f"| {label} | {implementation} | {unit} | {ratio} | {result['peak_rss_mb']:.0f} MB | {output} |",
              flush=True)


def print_header(title: str, image_path: str, runs: int, leading_columns: tuple[str, ...] = ("task",)) -> None:
    """The lines above a benchmark table: what ran on which machine, then the table's header."""
    image = load_rgb(image_path)
    print(f"# {title}, {Path(image_path).name} {image.shape[1]}x{image.shape[0]}")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, python {platform.python_version()}; medians of {runs} runs\n")
    columns = (*leading_columns, "implementation", "median", "vs reference", "peak RSS", "output")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def main() -> None:
    parser = worker_parser(__doc__.splitlines()[0], ("TASK", "IMPL"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = parser.parse_args()

    if args.worker:
        worker(args.worker[0], args.worker[1], args.weights, args.image, args.runs, args.out)
        return

    print_header("sam_core benchmark: vit_b and SAM 2.1 Hiera-T/S fp32, random weights", args.image, args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        weights: dict[str, Path] = {}
        for task in args.tasks:
            model_type = task_model(task)
            if model_type not in weights:
                weights[model_type] = make_weights(model_type, Path(tmp))
            hf_dir = weights[model_type]
            implementations = [name for name in IMPLEMENTATIONS
                               if task.endswith("encoder") or name != "transformers"]  # encoder only
            measure(__file__, task, implementations, hf_dir, args.image, args.runs, Path(tmp))


if __name__ == "__main__":
    main()

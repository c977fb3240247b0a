"""Peak memory (RSS) of sam_core on a huge photo: Predictor, and AutomaticMaskGenerator with crops.

    .venv/bin/python benchmarks/memory.py [--image photo.jpg]

The photo is resized to 8000x6000 (48 Mpx). Each case runs in a fresh process and reports its peak RSS
(``ru_maxrss``) next to its RSS once the libraries, the model and the image are loaded, so that the
difference is what segmenting the image costs. vit_b has random weights (the official ones are not
downloaded here). The generator runs with crops (``crop_n_layers=1``: the whole image and four overlapping
crops, each encoded and prompted with 16x16 points) and ``output_mode="coco_rle"``, with its default quality
filters (random weights then keep few masks). ``--cases generator_all`` turns the filters off, so that every
mask of every crop is post-processed at the crop's size; with vit_tiny it had not finished after 35 minutes
on 2 cores shared with other jobs.
``binary_mask`` output adds one HxW bool array per mask (48 MB here) to the result, by definition.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from bench import DEFAULT_IMAGE, image_path

SIZE = (6000, 8000)  # H, W
TINY_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "sam_vit_tiny_shapes.safetensors"
CASES = {
    "predictor": {},
    "generator": {"points_per_side": 16, "crop_n_layers": 1, "output_mode": "coco_rle"},
    # The toy model's masks on a photo pass these (as in the README's photo example): masks to encode.
    "generator_lowered": {"points_per_side": 16, "crop_n_layers": 1, "pred_iou_thresh": 0.5,
                          "stability_score_thresh": 0.8, "output_mode": "coco_rle"},
    # Every mask of every point and crop post-processed at the crop's size (very long): not run by default.
    "generator_all": {"points_per_side": 16, "crop_n_layers": 1, "pred_iou_thresh": 0.0,
                      "stability_score_thresh": 0.0, "output_mode": "coco_rle"},
}
DEFAULT_CASES = ("predictor", "generator")
MODELS = ("vit_tiny", "vit_b")


def rss_mb() -> float:
    """Current resident set size."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def huge_image(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read image {path}")
    return cv2.cvtColor(cv2.resize(image, SIZE[::-1], interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)


def worker(case: str, model_name: str, image_path: str, weights_dir: Path) -> dict[str, Any]:
    import sam_core

    torch.set_grad_enabled(False)
    model = sam_core.load_sam(TINY_WEIGHTS if model_name == "vit_tiny" else weights_dir / f"hf-{model_name}")
    image = huge_image(image_path)
    baseline = rss_mb()
    start = time.perf_counter()
    if case == "predictor":
        predictor = sam_core.Predictor(model)
        predictor.set_image(image)
        height, width = image.shape[:2]
        masks, _, _ = predictor.predict(point_coords=np.array([[width * 0.45, height * 0.55]]),
                                        point_labels=np.array([1]))
        predictor.predict(box=np.array([width * 0.2, height * 0.2, width * 0.7, height * 0.8]))
        outputs = f"{len(masks)} masks of {masks.shape[1]}x{masks.shape[2]}"
    else:
        records = sam_core.AutomaticMaskGenerator(model, **CASES[case]).generate(image)
        outputs = f"{len(records)} masks"
    return {"baseline_mb": baseline, "peak_rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - start,
            "outputs": outputs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE, type=image_path,
                        help="the photo (default: scikit-image's chelsea at 1800x1200)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), choices=list(CASES))
    parser.add_argument("--weights-dir", type=Path, default=Path("/tmp/sam_core_memory_bench"),
                        help="where random vit_b weights are written (once)")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.image, args.weights_dir)))
        return

    for model_name in args.models:
        if model_name != "vit_tiny" and not (args.weights_dir / f"hf-{model_name}").exists():
            from sam_core.models.sam.parity import make_hf_sam

            make_hf_sam(model_name, seed=0).save_pretrained(args.weights_dir / f"hf-{model_name}")
    print(f"# sam_core peak memory: {Path(args.image).name} resized to {SIZE[1]}x{SIZE[0]}")
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"python {platform.python_version()}\n")
    print("| case | model | peak RSS | RSS before (libraries, model, image) | time | output |")
    print("|---|---|---|---|---|---|")
    for model_name in args.models:
        for case in args.cases:
            command = [sys.executable, __file__, "--worker", case, model_name, "--image", args.image,
                       "--weights-dir", str(args.weights_dir)]
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode != 0:
                print(f"# {case} {model_name} failed: {completed.stderr.strip()[-300:]}")
                continue
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            options = ", ".join(f"{key}={value}" for key, value in CASES[case].items())
            print(f"| {case}{f' ({options})' if options else ''} | {model_name} | {result['peak_rss_mb']:.0f} MB | "
                  f"{result['baseline_mb']:.0f} MB | {result['seconds']:.1f} s | {result['outputs']} |", flush=True)


if __name__ == "__main__":
    main()

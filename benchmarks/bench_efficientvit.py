"""Benchmark sam_core's EfficientViT-SAM against mit-han-lab's reference (``efficientsam==1.0.0``) on identical
random weights.

    .venv/bin/python benchmarks/bench_efficientvit.py [--image photo.jpg]

As ``bench.py``: one set of random weights per model (the reference's, every tensor randomised, saved as its
released .pt files are and loaded by ``load_sam``), every (task, implementation) pair in fresh subprocesses,
repeats interleaved across implementations, medians printed. ``encoder`` times the image encoder on the
preprocessed image (one warm-up call first); ``predict`` one point prompt through each predictor (20 calls
after a warm-up); ``amg16`` the automatic mask generator with 16x16 points and the reference's defaults, whose
mask set is compared with the reference's (random weights keep no mask there); ``amg16_all`` the same with the
quality filters off, so that masks survive and are post-processed and compared.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench import (
    PREDICT_CALLS,
    amg_options,
    load_rgb,
    measure,
    print_header,
    time_generator,
    timed,
    worker_parser,
    write_result,
)

MODELS = ("efficientvit_sam_l0", "efficientvit_sam_xl0")
TASKS = ("encoder", "predict", "amg16", "amg16_all")
IMPLEMENTATIONS = ("reference", "sam_core")


def worker(model_name: str, task: str, implementation: str, weights: Path, image_path: str, out: Path) -> None:
    import sam_core
    from sam_core.models.efficientvit.parity import make_reference_efficientvit_sam

    torch.set_grad_enabled(False)
    image = load_rgb(image_path)
    point = np.array([[image.shape[1] * 0.45, image.shape[0] * 0.55]])
    label = np.array([1])
    if implementation == "sam_core":
        from sam_core.runtime import keep_freed_memory_by_default

        keep_freed_memory_by_default()  # what sam-amg does first
        model: Any = sam_core.load_sam(weights)
    else:
        model = make_reference_efficientvit_sam(model_name)
        model.load_state_dict(torch.load(weights, weights_only=True))
    masks = None
    if task == "encoder":
        if implementation == "sam_core":
            pixels = torch.as_tensor(model.transform.apply_image(image)).permute(2, 0, 1)[None]
            prepared = model.preprocess(pixels)
            times, _ = timed(lambda: model.encode(prepared), 1)
        else:
            prepared = model.transform(image)[None]
            times, _ = timed(lambda: model.image_encoder(prepared), 1)
    elif task == "predict":
        if implementation == "sam_core":
            predictor: Any = sam_core.Predictor(model)
        else:
            from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor

            predictor = EfficientViTSamPredictor(model)
        predictor.set_image(image)
        times, _ = timed(lambda: predictor.predict(point_coords=point, point_labels=label), PREDICT_CALLS)
    else:
        options = amg_options(task)
        if implementation == "sam_core":
            generator: Any = sam_core.AutomaticMaskGenerator(model, **options)
        else:
            from efficientsam.models.efficientvit.sam import EfficientViTSamAutomaticMaskGenerator

            generator = EfficientViTSamAutomaticMaskGenerator(model, **options)
        times, masks = time_generator(generator, image, 1)
    write_result(out, times, masks)


def main() -> None:
    parser = worker_parser(__doc__.splitlines()[0], ("MODEL", "TASK", "IMPL"))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.weights, args.image, args.out)
        return

    from sam_core.models.efficientvit.parity import make_reference_efficientvit_sam

    print_header("sam_core EfficientViT-SAM benchmark: fp32, random weights", args.image, args.runs,
                 leading_columns=("model", "task"))
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in args.models:
            weights = Path(tmp) / f"{model_name}.pt"
            torch.save(make_reference_efficientvit_sam(model_name, seed=0).state_dict(), weights)
            for task in args.tasks:
                measure(__file__, task, list(IMPLEMENTATIONS), weights, args.image, args.runs, Path(tmp),
                        worker_args=[model_name, task], label=f"{model_name} | {task}")

if __name__ == "__main__":
    main()

"""Benchmark sam_core's MobileSAM (vit_t), SAM-HQ (ViT-B) and EdgeSAM against their reference packages on
identical random weights.

    .venv/bin/python benchmarks/variants_bench.py [--image photo.jpg]

As ``bench.py``: one set of random weights per model (every tensor random), each (task, implementation)
pair in fresh subprocesses (peak RSS per pair), repeats interleaved across implementations, medians printed;
encoder and predict after one warm-up call; the AMG rows check that sam_core's mask set equals the
reference's: ``amg16`` with the reference's default filters (random weights keep no mask there), ``amg16_all``
with the quality filters off, so that masks survive and are post-processed and compared. References:
``mobilesam-mirror`` (MobileSAM's package), ``segment-anything-hq``, plus transformers' ``SamHQModel`` for
the SAM-HQ encoder, and sssegmentation's EdgeSAM (``EdgeSAMPredictor``, ``EdgeSAMAutomaticMaskGenerator``).
``sam_core`` runs as its entry points set the process up.
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

from sam_core.runtime import keep_freed_memory_by_default

MODELS = {"mobile_sam": "vit_t", "sam_hq_b": "sam_hq_vit_b", "edge_sam": "edge_sam"}
KINDS = ("encoder", "predict", "amg16", "amg16_all")
TASKS = tuple(f"{model}_{kind}" for model in MODELS for kind in KINDS)
IMPLEMENTATIONS = ("reference", "transformers", "sam_core")


def split_task(task: str) -> tuple[str, str]:
    """Model and task kind of a task name: ``sam_hq_b_amg16_all`` -> ``("sam_hq_b", "amg16_all")``."""
    model = next(name for name in MODELS if task.startswith(f"{name}_"))
    return model, task.removeprefix(f"{model}_")


def make_weights(model: str, directory: Path) -> Path:
    """The reference's random weights in its own file format: MobileSAM's .pt, SAM-HQ's Hugging Face
    directory (which segment-anything-hq's model then takes from sam_core's loaded copy)."""
    from sam_core.registry import lookup_model

    config = lookup_model(MODELS[model])[1]
    if model == "edge_sam":
        from sam_core.models.edge_sam.parity import make_ssseg_edge_sam

        path = directory / "edge_sam.pth"  # EdgeSAM's flat state dict, as sssegmentation loads it
        torch.save(make_ssseg_edge_sam(config).state_dict(), path)
        return path
    if model == "mobile_sam":
        from sam_core.models.mobile_sam.parity import make_reference_mobile_sam

        path = directory / "mobile_sam.pt"
        torch.save(make_reference_mobile_sam(config).state_dict(), path)
        return path
    from sam_core.models.sam_hq.parity import make_hf_sam_hq

    path = directory / "hf-sam_hq_vit_b"
    make_hf_sam_hq(config.base).save_pretrained(path)
    return path


def build(model: str, implementation: str, weights: Path) -> Any:
    import sam_core

    ours = sam_core.load_sam(weights)
    if implementation == "sam_core":
        return ours
    if implementation == "transformers":
        from transformers import SamHQModel

        return SamHQModel.from_pretrained(weights).eval()
    if model == "edge_sam":
        from sam_core.models.edge_sam.parity import make_ssseg_edge_sam_predictor

        return make_ssseg_edge_sam_predictor(ours.config, weights)  # its predictor; the model is .model
    if model == "mobile_sam":
        from sam_core.models.mobile_sam.parity import make_reference_mobile_sam

        reference = make_reference_mobile_sam(ours.config)
        reference.load_state_dict(torch.load(weights))
    else:
        from sam_core.models.sam_hq.parity import make_reference_sam_hq

        reference = make_reference_sam_hq(ours.config)
        reference.load_state_dict(ours.state_dict())
    return reference.eval()  # eval() after loading: TinyViT caches its expanded attention biases


def worker(task: str, implementation: str, weights: Path, image_path: str, runs: int, out: Path) -> None:
    import sam_core

    torch.set_grad_enabled(False)
    if implementation == "sam_core":
        keep_freed_memory_by_default()  # what sam-amg does first
    model_name, kind = split_task(task)
    if implementation == "transformers" and kind != "encoder":
        raise SystemExit("not measured")
    image = load_rgb(image_path)
    model = build(model_name, implementation, weights)
    package = {"mobile_sam": "mobile_sam", "sam_hq_b": "segment_anything_hq", "edge_sam": None}[model_name]
    package = package and __import__(package)
    ssseg = model_name == "edge_sam" and implementation == "reference"  # sssegmentation's predictor, not a model
    point = np.array([[image.shape[1] * 0.45, image.shape[0] * 0.55]])
    label = np.array([1])
    masks = None
    if kind == "encoder":
        pixels = torch.as_tensor(sam_core.ResizeLongestSide(1024).apply_image(image)).permute(2, 0, 1)[None].float()
        prepared = sam_core.build_sam("vit_t").preprocess(pixels)  # every implementation's normalisation
        reference_model = model.model if ssseg else model
        encode = {"sam_core": getattr(model, "encode", None),
                  "reference": getattr(reference_model, "image_encoder", None),
                  "transformers": getattr(model, "get_image_embeddings", None)}[implementation]
        times, _ = timed(lambda: encode(prepared), runs)
    elif kind == "predict":
        if ssseg:
            model.setimage(image)
            times, _ = timed(lambda: model.predict(point_coords=point, point_labels=label), PREDICT_CALLS)
        else:
            predictor = sam_core.Predictor(model) if implementation == "sam_core" else package.SamPredictor(model)
            predictor.set_image(image)
            times, _ = timed(lambda: predictor.predict(point_coords=point, point_labels=label), PREDICT_CALLS)
    else:
        options = amg_options(kind)
        if ssseg:
            from sam_core.models.edge_sam.parity import make_ssseg_edge_sam_predictor

            generator = make_ssseg_edge_sam_predictor(sam_core.load_sam(weights).config, weights, options)
        elif implementation == "sam_core":
            generator = sam_core.AutomaticMaskGenerator(model, **options)
        else:
            generator = package.SamAutomaticMaskGenerator(model, **options)
        times, masks = time_generator(generator, image, runs)
    write_result(out, times, masks)


def main() -> None:
    parser = worker_parser(__doc__.splitlines()[0], ("TASK", "IMPL"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.weights, args.image, args.runs, args.out)
        return

    print_header("sam_core benchmark: MobileSAM vit_t, SAM-HQ ViT-B and EdgeSAM fp32, random weights", args.image,
                 args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        weights: dict[str, Path] = {}
        for task in args.tasks:
            model = split_task(task)[0]
            if model not in weights:
                weights[model] = make_weights(model, Path(tmp))
            implementations = [name for name in IMPLEMENTATIONS
                               if name != "transformers" or task == "sam_hq_b_encoder"]  # SamHQModel's encoder
            measure(__file__, task, implementations, weights[model], args.image, args.runs, Path(tmp))


if __name__ == "__main__":
    main()

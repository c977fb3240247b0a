"""The transformers mask-generation guide's pipeline call, sam_core (``sam_core.compat.transformers``) against
transformers, on the same full-size random weights: SAM ViT-B and SAM 2.1 Hiera-tiny.

    .venv/bin/python benchmarks/hf_pipeline_bench.py [--image photo.jpg] [--models sam_vit_b sam2.1_hiera_tiny]
        [--points-per-side 32] [--results benchmarks/results.md]

Each model is built by transformers with every tensor random, written with its ``save_pretrained`` (weights and
processor) to a temporary folder, and both pipelines load that folder. The call is the guide's
(``points_per_batch=64``) with the quality filters off (``pred_iou_thresh=0, stability_score_thresh=0``), so that
masks survive and both sides post-process every candidate; one run each, in this process. The table gives
both times, their ratio, and how far the outputs agree (mask count, largest score difference, fraction of
differing mask pixels). The default image is the photo bench.py uses (scikit-image's chelsea at 1800x1200).
With ``--results`` the table is also appended to that markdown file.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench import DEFAULT_IMAGE, image_path, load_rgb
from PIL import Image

from sam_core.compat.transformers import pipeline as sam_core_pipeline
from sam_core.models.sam.config import get_config
from sam_core.models.sam.parity import hf_config_parts, randomize_every_tensor_
from sam_core.models.sam2.config import SAM2_CONFIGS
from sam_core.models.sam2.parity import make_hf_sam2

MODELS = ("sam_vit_b", "sam2.1_hiera_tiny")


def write_checkpoint(name: str, folder: Path) -> Path:
    """A transformers save_pretrained folder of ``name`` with every tensor random."""
    import transformers  # the reference side of the benchmark

    if name == "sam_vit_b":
        parts = hf_config_parts(get_config("vit_b"))
        parts["mask_decoder_config"]["layer_norm_eps"] = 1e-5  # Meta's, as sam_core's SAM (docs/compat-transformers.md)
        model = randomize_every_tensor_(transformers.SamModel(transformers.SamConfig(**parts)).eval())
        processor = transformers.SamProcessor(transformers.SamImageProcessor())
    else:
        model = randomize_every_tensor_(make_hf_sam2(SAM2_CONFIGS[name]))
        processor = transformers.Sam2Processor(transformers.Sam2ImageProcessor())
    with torch.no_grad():  # the prompt encoder's copy of the Fourier matrix is tied to the model's
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def timed(generator: Any, image: Image.Image, options: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    output = generator(image, **options)
    return time.perf_counter() - started, output


def agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    if len(ours["masks"]) != len(theirs["masks"]):
        return f"{len(ours['masks'])} vs {len(theirs['masks'])} masks"
    if not ours["masks"]:
        return "identical (0 masks)"
    scores = (ours["scores"] - theirs["scores"]).abs().max().item()
    pixels = (torch.stack(ours["masks"]) != torch.stack(theirs["masks"])).float().mean().item()
    return f"{len(ours['masks'])} masks, max score difference {scores:.1e}, differing pixels {pixels:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=image_path, default=DEFAULT_IMAGE, help="image file (default: %(default)s)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--points-per-side", type=int, default=32, help="points_per_crop (default: %(default)s)")
    parser.add_argument("--results", type=Path, help="also append the table to this markdown file")
    args = parser.parse_args()
    # Imported here: the reference side of the benchmark.
    from transformers import pipeline as transformers_pipeline

    image = Image.fromarray(load_rgb(args.image))
    options = {"points_per_batch": 64, "points_per_crop": args.points_per_side, "pred_iou_thresh": 0,
               "stability_score_thresh": 0}
    lines = ["## transformers mask-generation pipeline vs sam_core.compat.transformers "
             "(benchmarks/hf_pipeline_bench.py)\n",
             f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}, python {platform.python_version()}; random weights, {image.width}x{image.height} "
             f"image, points_per_batch=64, points_per_crop={args.points_per_side}, filters off; one run each\n",
             "| model | transformers | sam_core | speed-up | output |", "|---|---|---|---|---|"]
    for name in args.models:
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = str(write_checkpoint(name, Path(folder)))
            theirs_seconds, theirs = timed(transformers_pipeline("mask-generation", model=checkpoint, device="cpu"),
                                           image, options)
            ours_seconds, ours = timed(sam_core_pipeline("mask-generation", model=checkpoint), image, options)
        lines.append(f"| {name} | {theirs_seconds:.2f} s | {ours_seconds:.2f} s | {theirs_seconds / ours_seconds:.2f}x "
                     f"| {agreement(ours, theirs)} |")
        print(lines[-1], flush=True)
    if any(name.startswith("sam2") for name in args.models) and image.width != image.height:
        lines.append("\nOn a non-square image the SAM 2 outputs differ by design: transformers 5.25 scales SAM 2's "
                     "grid points as if the image were resized on its long side (it is stretched to the square), so "
                     "its points cover only part of the image; sam_core places them over the whole image.")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.results:
        with open(args.results, "a") as handle:
            handle.write("\n" + table)


if __name__ == "__main__":
    main()

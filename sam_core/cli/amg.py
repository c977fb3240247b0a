"""``sam-amg``: automatic masks for an image, a folder of images or a list of image paths."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam_core.cli.engine_args import add_engine_arguments
from sam_core.distributed.amg import run_amg_on_ray
from sam_core.io.checkpoints import CheckpointError
from sam_core.io.files import IMAGE_SUFFIXES, list_images
from sam_core.jobs.amg import (
    GENERATOR_OPTIONS,
    LIST_SUFFIXES,
    Progress,
    build_generator,
    check_output,
    plan_outputs,
    process_image,
)
from sam_core.registry import model_names
from sam_core.runtime import keep_freed_memory_by_default


def main(argv: list[str] | None = None) -> int:
    """``sam-amg``: automatic masks for an image, a folder of images or a list of image paths, written as PNGs
    or COCO RLE JSON, in this process or on Ray (``--engine ray``).

    Resumable: images whose outputs exist are skipped unless ``--overwrite``. Unreadable images are
    reported, listed in ``failures.csv`` and skipped; the exit status is 1 if any image failed, 2 for bad
    arguments or model.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.engine == "ray":
        return run_amg_on_ray(args, parser)
    source = Path(args.input)
    if not source.exists():
        parser.error(f"--input {args.input} does not exist")
    if source.suffix.lower() in LIST_SUFFIXES:
        parser.error(f"--input {args.input}: lists of image paths need --engine ray")
    try:
        check_output(args)
    except ValueError as error:
        parser.error(str(error))
    images = list_images(source)
    if not images:
        parser.error(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {args.input}")
    jobs, pending = plan_outputs(args, [str(image) for image in images])
    progress = Progress(args, len(jobs), len(pending))
    if pending:
        keep_freed_memory_by_default()
        try:
            generator = build_generator(args)
        except (CheckpointError, OSError, ValueError) as error:
            print(f"sam-amg: error: {error}", file=sys.stderr)
            return 2
        for source, name in pending:
            progress.record(source, process_image(generator, args, source, name))
    return progress.finish()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam-amg", description="Segment everything: automatic SAM / SAM 2 masks for an image or a folder of "
                                    "images (the generator's defaults are the model family's).")
    parser.add_argument("--input", required=True,
                        help="an image, or a folder of images (not recursive); with --engine ray also a list of "
                             "image paths or URIs: a .txt file (one a line), or a column of a .csv or .parquet "
                             "file (local or any URI Ray's readers take)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the results (created if needed)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="registry name (vit_b, vit_l, vit_h, sam2.1_hiera_tiny, ...), Hugging Face "
                                       "id or folder, or checkpoint path")
    model.add_argument("--checkpoint", type=Path, help="checkpoint file (Meta .pth or SAM 2 .pt, sam_core "
                                                       ".safetensors, ...)")
    parser.add_argument("--model-type", choices=model_names(),
                        help="model type of --checkpoint (default: inferred from the weights)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--output-format", choices=("png", "coco"), default="png",
                        help="png: a folder per image with one PNG per mask and metadata.csv; "
                             "coco: one JSON per image with COCO RLE masks (default: png)")
    parser.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png with all masks drawn")
    parser.add_argument("--overwrite", action="store_true", help="redo images whose outputs already exist")
    options = parser.add_argument_group("mask generator options (defaults: AutomaticMaskGenerator's)")
    for option, kind, text in GENERATOR_OPTIONS:
        options.add_argument("--" + option.replace("_", "-"), dest=option, type=kind, help=text)
    options.add_argument("--use-m2m", action="store_true",
                         help="refine each mask once with its own low-res logits as mask input (SAM 2's option)")
    options.add_argument("--single-mask", action="store_true",
                         help="one mask per point instead of the three candidate masks")
    options.add_argument("--point-grids", type=Path,
                         help=".npy (one grid) or .npz (one grid per crop layer, in order) of points in [0, 1]; "
                              "replaces --points-per-side")
    add_engine_arguments(parser, "sam-amg", batch_size=4)
    parser.add_argument("--input-column", default="path",
                        help="column of a .csv or .parquet --input that holds the image paths (default: path)")
    return parser

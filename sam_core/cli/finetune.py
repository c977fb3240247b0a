"""``sam-finetune``: fine-tune a SAM / SAM 2 model on annotated images, writing ``best.safetensors``,
``last.safetensors``, ``training_state.pt``, ``metrics.jsonl`` and ``curves.png`` into ``--output``.
Exit status: 0 on success, 1 when training failed, 2 for bad arguments, data or model.

Examples and design notes: docs/finetune.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from sam_core.cli.engine_args import add_engine_arguments
from sam_core.cli.finetune_args import add_model_and_data_arguments, read_data
from sam_core.distributed.embedding_cache import build_cache_on_ray
from sam_core.distributed.session import RayMissing
from sam_core.finetune.annotations import AnnotatedImage
from sam_core.finetune.cache import EmbeddingCache
from sam_core.finetune.config import PRESETS, TRAINABLE
from sam_core.finetune.data import split_by_image
from sam_core.finetune.trainer import STATE, default_cache_dir, finetune, saved_config
from sam_core.interface import PromptableSegmenter
from sam_core.io.checkpoints import CheckpointError, load_sam

STEP_HELP = ("One step is one AdamW update over --images-per-step images (shuffled, every image once per epoch), "
             "each with up to --objects-per-image of its objects; each object gets a first prompt (a point in its "
             "mask or its jittered box) and --correction-points + --mask-only-iterations more decoder passes.")
# Flags that override the preset (or a resumed run's config): (flag, config field, type, help).
_OVERRIDES: list[tuple[str, str, Any, str]] = [
    ("--steps", "steps", int, "number of steps (updates)"),
    ("--seed", "seed", int, "seed of the image order, objects, prompts and LoRA initialisation"),
    ("--lr", "learning_rate", float, "peak learning rate"),
    ("--images-per-step", "images_per_step", int, "images per update"),
    ("--objects-per-image", "objects_per_image", int, "most objects of an image per step"),
    ("--correction-points", "correction_points", int, "decoder passes adding a point from the error region"),
    ("--mask-only-iterations", "mask_only_iterations", int, "decoder passes with only the previous mask added"),
    ("--box-probability", "box_probability", float, "chance that an object's first prompt is its box"),
    ("--eval-every", "eval_every", int, "validate and save last/best/state every this many steps"),
    ("--lora-rank", "lora_rank", int, "rank of the LoRA adapters (with --train ...,lora)"),
]


def main(argv: list[str] | None = None) -> int:
    """Run ``sam-finetune`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    overrides = {field: getattr(args, field) for _, field, _, _ in _OVERRIDES if getattr(args, field) is not None}
    if args.train is not None:
        overrides["train"] = tuple(part.strip() for part in args.train.split(",") if part.strip())
    resuming = args.resume and (args.output / STATE).is_file()
    try:
        config = (saved_config(args.output) if resuming else PRESETS[args.preset]).replace(**overrides)
        data = read_data(args)
        train, val = split_by_image(data.images, args.val_fraction, args.split_seed)
        model = load_sam(args.model, device=args.device, dtype=torch.float32)
    except (CheckpointError, OSError, ValueError) as error:
        print(f"sam-finetune: error: {error}", file=sys.stderr)
        return 2
    print(f"sam-finetune: {data.describe()}; {len(train)} images for training, {len(val)} for validation",
          file=sys.stderr)
    try:
        if args.engine == "ray" or args.cache_only:
            _precompute_cache(args, model, config.train, [*train, *val])
            if args.cache_only:
                return 0
        result = finetune(model, train, val, args.output, config, resume=args.resume, cache_dir=args.cache_dir,
                          cache_dtype=torch.float16 if args.cache_fp16 else None, compare=not args.no_compare)
    except (FileExistsError, RayMissing, ValueError) as error:
        print(f"sam-finetune: error: {error}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as error:
        print(f"sam-finetune: error: training failed: {error}", file=sys.stderr)
        return 1
    score = "" if result.best_score is None else f", validation score {result.best_score:.4f}"
    print(f"sam-finetune: {result.steps} steps; best: step {result.best_step}{score} -> {result.best_path}; "
          f"last -> {result.last_path}")
    if model.family == "sam":
        print(f"sam-finetune: for Meta's segment_anything: sam-convert {result.best_path} best.pth")
    return 0


def _precompute_cache(args: argparse.Namespace, model: PromptableSegmenter, train: tuple[str, ...],
                      images: list[AnnotatedImage]) -> None:
    """Encode the images not in the embedding cache yet, in this process or on Ray; fine-tuning then finds them
    all there."""
    if "lora" in train:
        raise ValueError("--engine ray and --cache-only precompute the embedding cache, which --train lora does "
                         "not use")
    cache = EmbeddingCache(model, args.cache_dir or default_cache_dir(),
                           storage_dtype=torch.float16 if args.cache_fp16 else None, batch_size=args.batch_size)
    if args.engine == "ray":
        encoded = build_cache_on_ray(args, cache, images)
    else:
        before = sum(cache.path(cache.key(image.load_image())).is_file() for image in images)
        cache.build((image.load_image() for image in images), len(images))
        encoded = len(images) - before
    print(f"sam-finetune: embedding cache: {len(images)} images, {encoded} encoded now; in {cache.directory}",
          file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam-finetune", description="Fine-tune a SAM / SAM 2 model on annotated images with SAM's interactive "
                                         "training recipe; the frozen image encoder's features are cached. "
                                         + STEP_HELP)
    add_model_and_data_arguments(parser)
    parser.add_argument("--output", required=True, type=Path, help="folder of the run (created if needed)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output from its last saved step (same data and model)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="hyper-parameters to start from (default: %(default)s; 'paper': the SAM paper's "
                             "schedule)")
    parser.add_argument("--train", help=f"comma-separated parts to train, of {', '.join(TRAINABLE)} (default: "
                                        "decoder; lora runs the image encoder every step, without the cache)")
    for flag, field, kind, text in _OVERRIDES:
        parser.add_argument(flag, dest=field, type=kind, help=f"{text} (default: the preset's)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of the images held out for validation, by image (default: %(default)s)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation split")
    parser.add_argument("--cache-dir", type=Path, help="embedding cache folder (default: $SAM_CORE_CACHE/embeddings "
                                                       "or ~/.cache/sam_core/embeddings)")
    parser.add_argument("--cache-fp16", action="store_true", help="store cached features as float16 (half the disk)")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the full before/after evaluation of the validation images")
    parser.add_argument("--cache-only", action="store_true",
                        help="fill the embedding cache (all images, training and validation) and stop")
    add_engine_arguments(parser, "sam-finetune", batch_size=4)
    return parser


if __name__ == "__main__":
    sys.exit(main())

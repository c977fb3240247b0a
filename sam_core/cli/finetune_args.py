"""Command-line arguments that ``sam-eval`` and ``sam-finetune`` share: the model, the annotated data and the
rules that filter its masks, the device."""

from __future__ import annotations

import argparse
from pathlib import Path

from sam_core.finetune.annotations import DEFAULT_MAX_FRACTION, DEFAULT_MIN_AREA, TrainingData
from sam_core.finetune.data import read_training_data


def add_model_and_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--data``, ``--images``, ``--min-area``, ``--max-fraction`` and ``--device``."""
    parser.add_argument("--model", required=True, help="registry name (vit_b, sam2.1_hiera_tiny, ...), Hugging Face "
                                                       "id or folder, or checkpoint path: what load_sam takes")
    parser.add_argument("--data", required=True, type=Path,
                        help="COCO instance JSON, folder with images/ and masks/ or labels/, or sam-amg output")
    parser.add_argument("--images", type=Path, help="image folder: for COCO, for sam-amg output (its --input), or "
                                                    "instead of DATA/images")
    parser.add_argument("--min-area", type=int, default=DEFAULT_MIN_AREA,
                        help="skip masks under this many pixels (default: %(default)s)")
    parser.add_argument("--max-fraction", type=float, default=DEFAULT_MAX_FRACTION,
                        help="skip masks covering more of the image than this (default: %(default)s)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cpu)")


def read_data(args: argparse.Namespace) -> TrainingData:
    """The annotated images the arguments name; ``ValueError`` when none has a usable object."""
    data = read_training_data(args.data, args.images, min_area=args.min_area, max_fraction=args.max_fraction)
    if not data.images:
        raise ValueError(f"no usable objects in {args.data} ({data.describe()})")
    return data

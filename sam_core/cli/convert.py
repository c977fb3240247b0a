"""``sam-convert SRC DST``: rewrite a checkpoint as sam_core safetensors or in Meta's layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sam_core.io.checkpoints import CheckpointError, load_sam, model_type_name, save_meta_checkpoint, save_sam
from sam_core.registry import model_names

_CONVERT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main(argv: list[str] | None = None) -> int:
    """``sam-convert SRC DST``: rewrite any checkpoint that load_sam reads as sam_core safetensors, or, when
    DST ends in .pth, in Meta's layout (SAM only: the state dict that segment_anything loads)."""
    parser = argparse.ArgumentParser(
        prog="sam-convert", description="Convert a SAM checkpoint to sam_core's safetensors format, or to Meta's "
                                        ".pth layout (SAM 1 models; DST ending in .pth).")
    parser.add_argument("src", help="Meta .pth or SAM 2 .pt, Hugging Face checkpoint folder or hub id, sam_core "
                                    ".safetensors, or an official model name (vit_b, sam2.1_hiera_tiny, ...)")
    parser.add_argument("dst", type=Path, help="output file: .safetensors (sam_core), or .pth (Meta's "
                                                "segment_anything layout, SAM 1 models)")
    parser.add_argument("--config", choices=model_names(),
                        help="model type to load as (default: read from the checkpoint)")
    parser.add_argument("--dtype", choices=list(_CONVERT_DTYPES),
                        help="dtype of the written weights (default: the source's)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    args = parser.parse_args(argv)
    if args.dst.exists() and not args.overwrite:
        print(f"sam-convert: {args.dst} exists; skipped (use --overwrite to replace it)", file=sys.stderr)
        return 0
    try:
        sam = load_sam(args.src, config=args.config, dtype=_CONVERT_DTYPES.get(args.dtype))
        if args.dst.suffix == ".pth":
            save_meta_checkpoint(sam, args.dst)
        else:
            save_sam(sam, args.dst)
    except CheckpointError as error:
        print(f"sam-convert: error: {error}", file=sys.stderr)
        return 1
    parameters = sum(p.numel() for p in sam.parameters())
    print(f"wrote {args.dst}: {model_type_name(sam.config)}, {sam.dtype}, {parameters / 1e6:.1f}M parameters")
    return 0

"""``sam-export-onnx``: a model's prompt encoder and mask decoder (and image encoder) as ONNX graphs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam_core.io.checkpoints import CheckpointError
from sam_core.io.onnx_export import OPSET, export_onnx


def main(argv: list[str] | None = None) -> int:
    """``sam-export-onnx --model SRC --output FILE.onnx [--encoder FILE.onnx] [--quantize]``."""
    parser = argparse.ArgumentParser(
        prog="sam-export-onnx", description="Export a SAM model's prompt encoder and mask decoder as one ONNX graph "
                                            "with the inputs and outputs of Meta's scripts/export_onnx_model.py "
                                            "(SAM 2: plus its two high-resolution feature maps).")
    parser.add_argument("--model", required=True,
                        help="registry name (vit_b, sam2.1_hiera_tiny, ...), checkpoint file or Hugging Face id of a "
                             "SAM, MobileSAM, EfficientViT-SAM or SAM 2 model")
    parser.add_argument("--output", required=True, type=Path, help="the decoder graph, FILE.onnx")
    parser.add_argument("--encoder", type=Path, help="also write the image encoder graph to this file")
    parser.add_argument("--quantize", action="store_true",
                        help="also write the decoder with int8 weights beside --output, as <stem>.int8.onnx")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17, as Meta's exporter)")
    args = parser.parse_args(argv)
    try:
        files = export_onnx(args.model, args.output, encoder=args.encoder, quantize=args.quantize,
                            opset=args.opset or OPSET)
    except (CheckpointError, ValueError) as error:
        print(f"sam-export-onnx: error: {error}", file=sys.stderr)
        return 1
    for written in (files.decoder, files.encoder, files.quantized_decoder):
        if written is not None:
            print(f"wrote {written}")
    return 0

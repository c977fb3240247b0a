"""``sam-eval``: score a model on annotated images and write ``summary.json`` and ``per_object.csv``.

    sam-eval --model vit_b --data instances_val.json --images val/ --output eval/
    sam-eval --model finetuned.safetensors --data data/ --output eval/      # data/images + data/masks

The protocols and keys are those of ``sam_core.finetune.evaluate``. Skipped data (see
``sam_core.finetune.data``) is listed in ``skipped.csv``. Exit status: 0 when every image was evaluated, 1
when some failed to load or predict (reported, the others evaluated), 2 for bad arguments, data or model.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from sam_core.cli.finetune_args import add_model_and_data_arguments, read_data
from sam_core.finetune.evaluate import DEFAULT_CLICKS, evaluate
from sam_core.io.checkpoints import CheckpointError, load_sam
from sam_core.io.files import write_bytes_atomically
from sam_core.pipelines.predictor import Predictor


def main(argv: list[str] | None = None) -> int:
    """Run ``sam-eval`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    parser = argparse.ArgumentParser(
        prog="sam-eval", description="Evaluate a SAM / SAM 2 model with the SAM paper's protocols (centre click, "
                                     "box, interactive clicks) on annotated images.")
    add_model_and_data_arguments(parser)
    parser.add_argument("--output", required=True, type=Path, help="folder for summary.json and per_object.csv")
    parser.add_argument("--clicks", type=int, nargs="+", default=list(DEFAULT_CLICKS),
                        help="click counts to report (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="evaluate again if OUTPUT/summary.json exists")
    args = parser.parse_args(argv)
    if min(args.clicks) < 1:
        parser.error(f"--clicks must be positive, got {args.clicks}")
    if (args.output / "summary.json").exists() and not args.overwrite:
        print(f"sam-eval: {args.output / 'summary.json'} exists; skipped (use --overwrite to redo it)")
        return 0
    try:
        data = read_data(args)
        predictor = Predictor(load_sam(args.model, device=args.device))
    except (CheckpointError, OSError, ValueError) as error:
        print(f"sam-eval: error: {error}", file=sys.stderr)
        return 2
    print(f"sam-eval: {data.describe()}", file=sys.stderr)
    evaluation = evaluate(predictor, data.images, clicks=args.clicks, on_error="skip", progress=True)
    for key, error in evaluation.failed:
        print(f"sam-eval: warning: image {key} failed: {error}; skipped", file=sys.stderr)
    evaluation.write(args.output)
    if data.skipped:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["source", "reason"])
        writer.writerows((skip.source, skip.reason) for skip in data.skipped)
        write_bytes_atomically(args.output / "skipped.csv", text.getvalue().encode())
    print(evaluation.format())
    print(f"sam-eval: wrote {args.output / 'summary.json'} and per_object.csv"
          f"{' and skipped.csv' if data.skipped else ''}; {len(evaluation.failed)} images failed")
    return 1 if evaluation.failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Measure how far sam_core's outputs are from Meta's reference on identical vit_b weights (the parity table of
docs/families/sam.md).

    .venv/bin/python benchmarks/parity_report.py [--image photo.jpg]

The reference gets random vit_b weights (``sam_core.models.sam.parity.make_reference_sam``); sam_core loads them from a
Meta-format ``.pth``. Both predictors embed the same image, then decode the same prompts: points, a negative
point, a box, box plus point, each with multimask output on and off, and each again with the best low-res
mask of the first call as ``mask_input``. Prints the largest differences seen.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from bench import DEFAULT_IMAGE, image_path
from segment_anything import SamPredictor

import sam_core
from sam_core.models.sam.config import SAM_CONFIGS
from sam_core.models.sam.parity import make_reference_sam, save_reference_pth


def prompts(width: int, height: int) -> dict[str, dict]:
    """Prompt kinds in pixels of a width x height image."""
    point = np.array([[0.45 * width, 0.55 * height]])
    negative = np.array([[0.7 * width, 0.3 * height]])
    box = np.array([0.2 * width, 0.25 * height, 0.75 * width, 0.8 * height])
    return {
        "point": dict(point_coords=point, point_labels=np.array([1])),
        "point + negative": dict(point_coords=np.concatenate([point, negative]), point_labels=np.array([1, 0])),
        "box": dict(box=box),
        "box + point": dict(box=box, point_coords=point, point_labels=np.array([1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE, type=image_path,
                        help="the photo (default: scikit-image's chelsea at 1800x1200)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    image = cv2.cvtColor(cv2.imread(args.image, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    reference = make_reference_sam(SAM_CONFIGS["vit_b"], seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        ours = sam_core.Predictor(sam_core.load_sam(save_reference_pth(reference, Path(tmp) / "vit_b.pth")))
    theirs = SamPredictor(reference)
    ours.set_image(image)
    theirs.set_image(image)
    embedding_diff = (ours.features - theirs.features).abs().max().item()
    embedding_scale = theirs.features.abs().max().item()

    agreement, score_diff, logit_diff, calls = 1.0, 0.0, 0.0, 0
    for kwargs in prompts(image.shape[1], image.shape[0]).values():
        for multimask in (True, False):
            first = theirs.predict(**kwargs, multimask_output=multimask)
            refine = dict(kwargs, mask_input=first[2][[int(np.argmax(first[1]))]])
            for call in (dict(kwargs), refine):
                ref_masks, ref_scores, ref_low = theirs.predict(**call, multimask_output=multimask)
                masks, scores, low = ours.predict(**call, multimask_output=multimask)
                agreement = min(agreement, float((masks == ref_masks).mean()))
                score_diff = max(score_diff, float(np.abs(scores - ref_scores).max()))
                logit_diff = max(logit_diff, float(np.abs(low - ref_low).max()))
                calls += 1

    print(f"# parity with segment_anything on random vit_b weights, {Path(args.image).name} "
          f"{image.shape[1]}x{image.shape[0]}, torch {torch.__version__}\n")
    print("| measure | worst over the calls |")
    print("|---|---|")
    print(f"| image embedding, max abs difference | {embedding_diff:.2g} (values up to {embedding_scale:.2g}) |")
    print(f"| mask pixels equal, {calls} predict calls | {100 * agreement:.5f} % |")
    print(f"| IoU scores, max abs difference | {score_diff:.2g} |")
    print(f"| low-res logits, max abs difference | {logit_diff:.2g} |")


if __name__ == "__main__":
    main()

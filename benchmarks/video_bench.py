"""Seconds per frame of SAM 2 video tracking: sam_core's VideoPredictor against Meta's SAM2VideoPredictor.

    .venv/bin/python benchmarks/video_bench.py [--frames 10] [--runs 3] >> benchmarks/results.md

Both load one Meta ``.pt`` of SAM 2.1 Hiera-T's shapes (1024 px input) with random weights and the object-score
head forced to "present" (otherwise every mask is empty and tracking skips real work), and track one object
clicked on frame 0 through the same synthetic clip (JPEG frames of 480x640). Each implementation runs in a fresh
process: ``--runs`` times init_state + click, then propagate_in_video over every frame; the table gives medians.
Meta's predictor runs with the two CPU patches of ``sam_core.models.sam2.parity.reference_video_on_cpu`` (hole filling
without its CUDA extension), so both compute the same masks; their largest logit difference is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from video_common import IMPLEMENTATIONS, draw_clip, load_predictor, make_checkpoint, peak_rss_mb, track

CONFIG_NAME = "sam2.1_hiera_tiny"


def worker(implementation: str, clip: Path, checkpoint: Path, runs: int, height: int, width: int,
           masks_out: Path) -> dict:
    predictor = load_predictor(implementation, CONFIG_NAME, checkpoint)
    results, logits = [], []
    for _ in range(runs):
        logits.clear()
        results.append(track(implementation, predictor, clip, height, width, logits=logits))
    np.save(masks_out, np.stack(logits))
    return {"setup_s": [r["setup_s"] for r in results], "per_frame_s": [r["per_frame_s"] for r in results],
            "peak_rss_mb": peak_rss_mb(), "frames": results[-1]["frames"],
            "frames_with_mask": results[-1]["frames_with_mask"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", nargs=2, type=int, default=[480, 640], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sam_core_video_bench"))
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "MASKS_OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    height, width = args.size
    checkpoint = make_checkpoint(CONFIG_NAME, args.workdir / f"{CONFIG_NAME}.pt")
    clip = draw_clip(args.workdir / f"clip_{height}x{width}", args.frames, height, width)
    if len(list(clip.glob("*.jpg"))) != args.frames:
        raise SystemExit(f"{clip} holds another clip length; remove it or use another --workdir")
    if args.worker:
        result = worker(args.worker[0], clip, checkpoint, args.runs, height, width, Path(args.worker[1]))
        print(json.dumps(result))
        return
    results, masks = {}, {}
    for implementation in IMPLEMENTATIONS:
        masks[implementation] = args.workdir / f"{implementation}_logits.npy"
        command = [sys.executable, __file__, "--worker", implementation, str(masks[implementation]), "--frames",
                   str(args.frames), "--runs", str(args.runs), "--size", str(height), str(width),
                   "--workdir", str(args.workdir)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{implementation} failed: {done.stderr.strip()[-800:]}")
        results[implementation] = json.loads(done.stdout.strip().splitlines()[-1])
    difference = float(np.abs(np.load(masks["sam_core"]) - np.load(masks["reference"])).max())
    reference_per_frame = statistics.median(results["reference"]["per_frame_s"])
    print(f"\n## SAM 2 video tracking: {CONFIG_NAME} (random weights, object head forced present), one object "
          f"clicked on frame 0, {args.frames} JPEG frames of {width}x{height}")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, python {platform.python_version()}; medians of {args.runs} runs\n")
    print("| implementation | propagation, s / frame | vs reference | init_state + click | peak RSS | output |")
    print("|---|---|---|---|---|---|")
    for implementation, result in results.items():
        per_frame = statistics.median(result["per_frame_s"])
        output = (f"{result['frames']} frames, mask on {result['frames_with_mask']}" if implementation == "reference"
                  else f"max logit difference {difference:.1e}")
        print(f"| {implementation} | {per_frame:.3f} s | {reference_per_frame / per_frame:.2f}x | "
              f"{statistics.median(result['setup_s']):.2f} s | {result['peak_rss_mb']:.0f} MB | {output} |")


if __name__ == "__main__":
    main()

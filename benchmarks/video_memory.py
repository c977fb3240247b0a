"""Peak memory of SAM 2 video tracking on a 300-frame clip against a 30-frame one: sam_core and Meta's predictor.

    .venv/bin/python benchmarks/video_memory.py [--frames 30 300] [--size 480 640]

One object is clicked on frame 0 and tracked forward to the end of a synthetic clip (JPEG frames of 480x640). The
model is the tiny ``sam2_hiera_test`` (256 px input: what grows with the video is per frame, not per weight) with
random weights and the object head forced to "present", loaded by both implementations from one Meta ``.pt``.
Each run is a fresh process; it reports its peak RSS (``ru_maxrss``), its RSS before tracking (libraries and
model), and the largest tensor footprint of the inference state after any frame (frames, features, memories,
outputs). Meta's predictor decodes and keeps every frame (3 x 256 x 256 float32 each) and every frame's outputs;
sam_core reads frames on demand and drops outputs that no later frame can reach.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
from video_common import IMPLEMENTATIONS, draw_clip, load_predictor, make_checkpoint, rss_mb, track

CONFIG_NAME = "sam2_hiera_test"
REPO = Path(__file__).resolve().parents[1]


def worker(implementation: str, clip: Path, checkpoint: Path, height: int, width: int) -> dict:
    predictor = load_predictor(implementation, CONFIG_NAME, checkpoint)
    before = rss_mb()
    return {"rss_before_mb": before, **track(implementation, predictor, clip, height, width, measure_state=True)}


def run_worker(implementation: str, clip: Path, checkpoint: Path, height: int, width: int) -> dict:
    """The worker in a fresh process: its peak RSS is this run's alone."""
    command = [sys.executable, __file__, "--worker", implementation, str(clip), "--checkpoint", str(checkpoint),
               "--size", str(height), str(width)]
    # The worker imports the sam_core of this checkout, installed or not.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{implementation} on {clip} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def clips(root: Path, lengths: list[int], height: int, width: int) -> dict[int, Path]:
    """One folder per length; shorter clips are the first frames of the longest, as hard links."""
    longest = draw_clip(root / "frames", max(lengths), height, width)
    folders = {}
    for length in lengths:
        folder = root / f"clip{length}"
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(length):
            link = folder / f"{t:05d}.jpg"
            if not link.exists():
                link.hardlink_to(longest / link.name)
        folders[length] = folder
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", nargs="+", type=int, default=[30, 300])
    parser.add_argument("--size", nargs=2, type=int, default=[480, 640], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--implementations", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sam_core_video_memory"))
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    height, width = args.size
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]), args.checkpoint, height, width)))
        return
    checkpoint = make_checkpoint(CONFIG_NAME, args.workdir / f"{CONFIG_NAME}.pt")
    folders = clips(args.workdir / f"{height}x{width}", sorted(args.frames), height, width)
    print(f"# SAM 2 video peak memory: {CONFIG_NAME} (random weights), one object, {width}x{height} JPEG frames")
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"python {platform.python_version()}\n")
    print("| implementation | frames | peak RSS | RSS before tracking | growth of the peak over the shortest clip | "
          "largest inference state | s / frame |")
    print("|---|---|---|---|---|---|---|")
    for implementation in args.implementations:
        first = None
        for length, folder in folders.items():
            result = run_worker(implementation, folder, checkpoint, height, width)
            first = result["peak_rss_mb"] if first is None else first
            print(f"| {implementation} | {length} | {result['peak_rss_mb']:.0f} MB | {result['rss_before_mb']:.0f} MB "
                  f"| {result['peak_rss_mb'] - first:+.0f} MB | {result['state_mb']:.1f} MB | "
                  f"{result['per_frame_s']:.3f} |", flush=True)


if __name__ == "__main__":
    main()

"""ViT-B predict and encoder times on a quiet machine and beside one competing CPU-bound process, for each
OpenMP wait policy.

    .venv/bin/python benchmarks/busy_machine.py [--image photo.jpg] [--runs 3]

People run SAM beside a browser, an editor or a second request of the web app, so the cores are shared. Each
row runs in a fresh process: ``passive`` imports sam_core first (which sets ``OMP_WAIT_POLICY=PASSIVE``, see
``sam_core.openmp_wait``), ``torch default`` imports torch first, so that OpenMP keeps its spinning default.
``busy`` rows start one process that spins a core in a Python loop for the length of the row. Repeats are
interleaved across rows; predict figures are the median and 90th percentile of all calls, encoder figures the
median of ``--runs`` passes. Random ViT-B weights: times do not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

POLICIES = ("passive", "torch default")
CONDITIONS = ("quiet", "busy")
PREDICT_CALLS = 20
SPIN = "while True: pass"


def worker(policy: str, image_path: str, out: Path) -> None:
    """Time predict calls and one encoder pass of a random ViT-B in this process, under ``policy``."""
    if policy == "torch default":
        import torch  # noqa: F401  before sam_core: OpenMP reads its (unset) wait policy now
    import sam_core  # first (passive row): it sets the wait policy before torch loads

    applied = sam_core.openmp_wait.applies_to_this_process
    import numpy as np
    from bench import load_rgb, timed

    image = load_rgb(image_path)
    predictor = sam_core.Predictor(sam_core.build_sam("vit_b"))
    encode_times, _ = timed(lambda: predictor.set_image(image), 1)
    point, label = np.array([[image.shape[1] * 0.45, image.shape[0] * 0.55]]), np.array([1])
    predict_times, _ = timed(lambda: predictor.predict(point_coords=point, point_labels=label), PREDICT_CALLS)
    out.write_text(json.dumps({"predict": predict_times, "encoder": encode_times,
                               "applied": applied}))


def run_row(policy: str, condition: str, image_path: str, out: Path) -> dict:
    """One fresh worker process for a (policy, condition) row, with the competing process around it if busy."""
    competitor = subprocess.Popen([sys.executable, "-c", SPIN]) if condition == "busy" else None
    try:
        command = [sys.executable, __file__, "--worker", policy, "--image", image_path, "--out", str(out)]
        environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
        completed = subprocess.run(command, capture_output=True, text=True, env=environment)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if completed.returncode != 0:
        raise SystemExit(f"{policy} {condition} failed: {completed.stderr[-500:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="chelsea", help="a photo path (default: scikit-image's chelsea)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.image, args.out)
        return

    import platform

    import torch
    from bench import image_path

    photo = image_path(args.image)
    results: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            for policy in POLICIES:
                for condition in CONDITIONS:
                    row = run_row(policy, condition, photo, Path(tmp) / "row.json")
                    merged = results.setdefault((policy, condition), {"predict": [], "encoder": []})
                    merged["predict"] += row["predict"]
                    merged["encoder"] += row["encoder"]
    print(f"# ViT-B fp32, random weights, {Path(photo).name}; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; {args.runs} interleaved repeats\n")
    print("| OpenMP wait | machine | predict median | predict p90 | encoder median | predict busy/quiet |")
    print("|---|---|---|---|---|---|")
    for (policy, condition), row in results.items():
        predict = sorted(row["predict"])
        median = statistics.median(predict)
        p90 = predict[int(0.9 * (len(predict) - 1))]
        quiet = statistics.median(results[(policy, "quiet")]["predict"])
        print(f"| {policy} | {condition} | {median * 1e3:.0f} ms | {p90 * 1e3:.0f} ms | "
              f"{statistics.median(row['encoder']):.2f} s | {median / quiet:.2f}x |")


if __name__ == "__main__":
    main()

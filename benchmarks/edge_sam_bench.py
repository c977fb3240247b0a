"""Benchmark sam_core's EdgeSAM against sssegmentation's EdgeSAM on identical random weights.

    .venv/bin/python benchmarks/edge_sam_bench.py [--repeats 3] [--threads N]

One set of random weights (every tensor random, BatchNorm statistics included) is written as EdgeSAM's
``edge_sam.pth`` and loaded by sssegmentation's ``EdgeSAMPredictor`` and by sam_core. Timed, on a 1024x1024
image after one warm-up call each, repeats interleaved between the implementations, medians printed:

- ``encoder``: the image encoder on a preprocessed (1, 3, 1024, 1024) input;
- ``predict``: one ``predict`` call with one foreground point and three (multimask) outputs, masks upsampled to
  the image, on an image set beforehand.

Needs ``pip install --no-deps sssegmentation==1.7.0`` and ``pip install scipy dill timm``. Targets: encoder at
least 1.5x sssegmentation's speed, predict at most 40 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import sam_core
from sam_core.models.edge_sam import EdgeSamConfig, build_edge_sam
from sam_core.models.edge_sam.parity import make_ssseg_edge_sam, make_ssseg_edge_sam_predictor
from sam_core.samples import draw_shapes_image

ENCODER_TARGET = 1.5  # sam_core's encoder speed over sssegmentation's, at least
PREDICT_TARGET_MS = 40.0


def median_seconds(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds of each call after one warm-up call, repeats interleaved between the
    calls. CPU time helps read runs on shared cores, where other processes stretch the wall time."""
    for call in calls.values():
        call()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
            for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per implementation (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = EdgeSamConfig()
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = Path(directory) / "edge_sam.pth"
        torch.save(make_ssseg_edge_sam(config, seed=0).state_dict(), checkpoint)
        reference = make_ssseg_edge_sam_predictor(config, checkpoint)
        ours = build_edge_sam(config)
        ours.load_state_dict(torch.load(checkpoint))

    image, _ = draw_shapes_image(np.random.default_rng(0), 1024, 1024, n_shapes=8)
    pixels = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    model_input = ours.preprocess(pixels)
    with torch.inference_mode():
        difference = (ours.image_encoder(model_input) - reference.model.image_encoder(model_input)).abs().max()
        encoder = median_seconds({"ssseg": lambda: reference.model.image_encoder(model_input),
                                  "sam_core": lambda: ours.image_encoder(model_input)}, args.repeats)

    predictor = sam_core.Predictor(ours)
    predictor.set_image(image)
    reference.setimage(image)
    point = dict(point_coords=np.array([[400.0, 300.0]]), point_labels=np.array([1]))
    predict = median_seconds({"ssseg": lambda: reference.predict(**point, num_multimask_outputs=3),
                              "sam_core": lambda: predictor.predict(**point, multimask_output=True)}, args.repeats)

    print(f"EdgeSAM (RepViT-M1, 1024x1024), {torch.get_num_threads()} torch threads, median of {args.repeats}; "
          f"embeddings differ by {difference:.1e} at most")
    print(f"{'task':<10}{'ssseg ms':>12}{'sam_core ms':>14}{'speed-up':>10}{'ssseg cpu ms':>15}{'sam_core cpu ms':>17}"
          f"{'cpu ratio':>11}")
    for task, seconds in (("encoder", encoder), ("predict", predict)):
        (wall, cpu), (our_wall, our_cpu) = seconds["ssseg"], seconds["sam_core"]
        print(f"{task:<10}{wall * 1e3:>12.1f}{our_wall * 1e3:>14.1f}{wall / our_wall:>9.2f}x"
              f"{cpu * 1e3:>15.1f}{our_cpu * 1e3:>17.1f}{cpu / our_cpu:>10.2f}x")
    speed_up = encoder["ssseg"][0] / encoder["sam_core"][0]
    predict_ms = predict["sam_core"][0] * 1e3
    print(f"targets: encoder >= {ENCODER_TARGET}x: {'met' if speed_up >= ENCODER_TARGET else 'MISSED'} "
          f"({speed_up:.2f}x); predict <= {PREDICT_TARGET_MS:.0f} ms: "
          f"{'met' if predict_ms <= PREDICT_TARGET_MS else 'MISSED'} ({predict_ms:.1f} ms)")


if __name__ == "__main__":
    main()

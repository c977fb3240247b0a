"""SAM 3's image encoder at full size (1008 x 1008, the 32-block ViT and the tracker neck) on random weights:
time per image, peak memory, and the host's fp32 GEMM rate measured in the same run.

    .venv/bin/python benchmarks/sam3_bench.py [--runs 1] [--threads N]

Heavy: about 5.6 TFLOP per image (counted below from the shapes), minutes on a 2-core CPU; one run is the
default. The first call is timed as it is (no warm-up): at this size one-off costs are small beside the work.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

import torch

from sam_core.models.sam3 import Sam3Config, build_sam3_model


def encoder_flops(config: Sam3Config) -> float:
    """Floating-point operations (2 per multiply-add) of the ViT and the tracker neck for one image."""
    grid, width = config.embedding_size, config.embed_dim
    tokens = grid * grid
    hidden = int(width * config.mlp_ratio)
    windows = (-(-grid // config.window_size)) ** 2  # the grid padded to whole windows
    window_tokens = config.window_size**2
    linear = tokens * (4 * width * width + 2 * width * hidden)  # qkv, proj, MLP
    total = 0.0
    for block in range(config.depth):
        if block in config.global_att_blocks:
            attention = 2 * tokens * tokens * width
        else:
            attention = 2 * windows * window_tokens * window_tokens * width
        total += 2 * (linear + attention)
    patch = tokens * 3 * config.patch_size**2 * width
    d_model = config.d_model
    neck = (4 * tokens * width * width // 2 + 16 * tokens * (width // 2) * (width // 4)  # 4x: two 2x2 deconvs
            + 4 * tokens * width * width // 2  # 2x: one 2x2 deconv
            + sum(scale * scale * tokens * (channels * d_model + 9 * d_model * d_model)
                  for scale, channels in ((4, width // 4), (2, width // 2), (1, width))))
    return total + 2 * (patch + neck)


def gemm_rate(seconds: float = 3.0) -> float:
    """fp32 GFLOP/s of 1024 x 1024 x 1024 matrix products on this host, now."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * 1024**3 * count / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = Sam3Config()
    model = build_sam3_model(config)
    parameters = sum(p.numel() for p in model.parameters())
    images = torch.randn(1, 3, config.image_size, config.image_size)
    before = gemm_rate()
    times = []
    with torch.inference_mode():
        for _ in range(args.runs):
            start = time.perf_counter()
            model.encode(images)
            times.append(time.perf_counter() - start)
    after = gemm_rate()
    flops = encoder_flops(config)
    median = statistics.median(times)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux
    print(f"host: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; fp32 GEMM {before:.0f} GFLOP/s before, {after:.0f} after")
    print(f"model: SAM 3 tracker path, {parameters / 1e6:.0f} M parameters; encoder {flops / 1e12:.2f} TFLOP per "
          f"{config.image_size}x{config.image_size} image")
    print("| model | encoder s (median of runs) | GFLOP/s | peak RSS GB |")
    print("|---|---|---|---|")
    print(f"| sam3 | {median:.1f} ({args.runs}) | {flops / median / 1e9:.0f} | {peak_gb:.2f} |")


if __name__ == "__main__":
    main()

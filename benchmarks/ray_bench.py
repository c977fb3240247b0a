"""Images per minute of ``sam-amg`` on this machine: the single-process engine against ``--engine ray`` with one
actor (holding every core) and with one actor per core.

    /work/tools/frozen.sh .venv/bin/python benchmarks/ray_bench.py --images 8 >> benchmarks/results.md

Each configuration runs as its own ``sam-amg`` process on a fresh output folder, on copies of the photos in
``--photos`` (random SAM 2.1 Hiera-T weights, the benchmark table's model, at ``--points-per-side``, with the IoU
and stability thresholds at 0 so that the random model's masks are kept and written). The time is
the process's wall clock from start to exit, as a user sees it: Python and torch imports, the model loads, Ray's
start and shutdown (the Ray rows start a local instance, as ``sam-amg`` does without ``--address``). The
outputs of every configuration are compared with the single-process engine's, byte for byte.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sam_core.jobs.samples import write_samples

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path,
                        help="folder of photos, copied round-robin into the input (default: scikit-image's "
                             "astronaut, chelsea and coffee, as sam-samples --photos writes them)")
    parser.add_argument("--images", type=int, default=8, help="images in the input (default: %(default)s)")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--model", default="sam2.1_hiera_tiny", help="registry name, built with random weights")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        weights = work / "model.safetensors"
        _random_weights(args.model, weights)
        photos = args.photos or Path(scratch) / "photos"
        if args.photos is None:
            write_samples(photos, photos=True)
        inputs = _input_folder(photos, args.images, work / "images")
        common = ["--input", str(inputs), "--checkpoint", str(weights), "--points-per-side",
                  str(args.points_per_side), "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
        configurations = [
            ("single process", []),
            (f"ray, 1 actor x {cores} CPUs", ["--engine", "ray", "--num-workers", "1", "--cpus-per-worker",
                                              str(cores), "--batch-size", "1"]),
            (f"ray, {cores} actors x 1 CPU", ["--engine", "ray", "--num-workers", str(cores),
                                              "--cpus-per-worker", "1", "--batch-size", "1"]),
        ]
        rows = []
        reference: dict[str, bytes] | None = None
        for label, extra in configurations:
            output = work / f"out{len(rows)}"
            seconds, summary = _run_amg([*common, "--output", str(output), *extra])
            files = _files(output)
            same = "reference" if reference is None else ("identical" if files == reference else "DIFFERENT")
            reference = files if reference is None else reference
            masks = re.search(r"\((\d+) masks\)", summary).group(1)
            rows.append((label, seconds, f"{same} ({masks} masks)"))
    print(f"\n# sam-amg engines: {args.model} fp32, random weights, amg{args.points_per_side} (thresholds 0), "
          f"{args.images} photos "
          f"({', '.join(sorted(path.name for path in args.photos.glob('*.jpg')))} round-robin)")
    print(f"# {platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, python "
          f"{platform.python_version()}; one run each, wall clock of the whole sam-amg process; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| engine | wall clock | images per minute | vs single process | outputs |")
    print("|---|---|---|---|---|")
    for label, seconds, same in rows:
        print(f"| {label} | {seconds:.1f} s | {60 * args.images / seconds:.2f} | {rows[0][1] / seconds:.2f}x "
              f"| {same} |")


def _random_weights(model: str, path: Path) -> None:
    import sam_core

    torch.manual_seed(0)
    sam_core.save_sam(sam_core.build_sam(model), path)


def _input_folder(photos: Path, count: int, folder: Path) -> Path:
    sources = sorted(photos.glob("*.jpg"))
    if not sources:
        raise SystemExit(f"no .jpg photos in {photos}")
    folder.mkdir()
    for index in range(count):
        source = sources[index % len(sources)]
        (folder / f"{index:03d}_{source.name}").write_bytes(source.read_bytes())
    return folder


def _run_amg(arguments: list[str]) -> tuple[float, str]:
    """Wall-clock seconds of one sam-amg process, and its summary line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "import sys; from sam_core.cli import amg_main; "
                           "sys.exit(amg_main(sys.argv[1:]))", *arguments], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sam-amg {' '.join(arguments)} failed ({done.returncode}):\n{done.stderr}")
    print(done.stdout.strip(), file=sys.stderr)
    return seconds, done.stdout.strip().splitlines()[-1]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


if __name__ == "__main__":
    main()

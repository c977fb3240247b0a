"""``sam-amg --engine ray``: segment-everything over a large image set with a pool of Ray actors.

The driver lists the images and skips those whose outputs exist, exactly as the single-process engine does
(``sam_core.jobs.amg.plan_outputs``); Ray Data streams the rest, ``--batch-size`` per call, through ``--num-workers``
actors that each hold one mask generator and run ``sam_core.jobs.amg.process_image`` on every image: the
outputs are the single-process engine's files, written atomically by the actor that made them. The driver
collects each image's result for the progress bar, failures.csv and the summary line.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from sam_core.distributed.session import RayMissing, batches_through_actors, ray_session
from sam_core.distributed.sources import list_image_sources
from sam_core.io.checkpoints import CheckpointError
from sam_core.jobs.amg import ImageFailed, Progress, build_generator, check_output, plan_outputs, process_image
from sam_core.runtime import keep_freed_memory_by_default


class AmgActor:
    """One Ray actor: a mask generator, and the outputs of the images it is handed.

    Args:
        args: the sam-amg arguments (model, generator options, output folder and format).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        # Ray reserves --cpus-per-worker CPUs for this actor: as many torch threads, not one per core of the node.
        torch.set_num_threads(args.cpus_per_worker)
        keep_freed_memory_by_default()
        self.args = args
        self.generator = build_generator(args)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        masks, reasons = [], []
        for source, name in zip(batch["source"], batch["name"]):
            result = process_image(self.generator, self.args, str(source), str(name))
            failed = isinstance(result, ImageFailed)
            masks.append(-1 if failed else result)
            reasons.append(str(result) if failed else "")
        return {"source": batch["source"], "masks": np.array(masks, dtype=np.int64), "reason": np.array(reasons)}


def run_amg_on_ray(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run sam-amg on Ray; the exit status of the single-process engine (0, 1 if any image failed, 2 for bad
    arguments or model)."""
    try:
        with ray_session(args.address) as ray:
            try:
                check_output(args)
                sources = list_image_sources(ray, args.input, args.input_column)
            except ValueError as error:
                parser.error(str(error))
            jobs, pending = plan_outputs(args, sources)
            progress = Progress(args, len(jobs), len(pending))
            if pending:
                try:  # a bad model or option fails here, with one clear message, rather than in every actor
                    build_generator(argparse.Namespace(**{**vars(args), "device": "cpu"}))
                except (CheckpointError, OSError, ValueError) as error:
                    print(f"sam-amg: error: {error}", file=sys.stderr)
                    return 2
                items = [{"source": source, "name": name} for source, name in pending]
                for row in batches_through_actors(ray, items, AmgActor, {"args": args}, args).iter_rows():
                    failed = row["masks"] < 0
                    progress.record(row["source"], ImageFailed(row["reason"]) if failed else int(row["masks"]))
            return progress.finish()
    except RayMissing as error:
        print(f"sam-amg: error: {error}", file=sys.stderr)
        return 2

"""Importing Ray with an install hint, joining or starting a Ray instance, and the resources of one actor."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

INSTALL_HINT = "pip install -e '.[ray]'"


class RayMissing(RuntimeError):
    """--engine ray without the ray extra installed."""


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data loaded, or ``RayMissing`` saying how to install it."""
    try:
        # Imported here: the ray extra: only --engine ray needs it.
        import ray
        import ray.data  # noqa: F401 (the engine's API; ray[data] brings its dependencies)
    except ImportError as error:
        raise RayMissing(f"--engine ray needs Ray Data, which is not installed ({error}); install the ray extra: "
                         f"{INSTALL_HINT}") from error
    return ray


@contextmanager
def ray_session(address: str | None) -> Iterator[ModuleType]:
    """Ray, connected for the duration: to the instance this process already holds, else to the cluster at
    ``address``, else to a local instance started here and shut down on exit."""
    ray = import_ray()
    # The engines draw their own progress bar; Ray Data's bars and start-up banner would garble it.
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    if ray.is_initialized():
        yield ray
        return
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def batches_through_actors(ray: ModuleType, items: list[dict[str, Any]], actor: type, constructor: dict[str, Any],
                           args: argparse.Namespace) -> Any:
    """A Ray dataset of ``items`` in blocks of ``--batch-size``, mapped by a pool of ``--num-workers`` actors (fewer
    when there are fewer blocks) of class ``actor``, each reserving ``--cpus-per-worker`` CPUs, and one GPU when
    ``--device`` is a CUDA device."""
    blocks = math.ceil(len(items) / args.batch_size)
    options: dict[str, Any] = {"compute": ray.data.ActorPoolStrategy(size=min(args.num_workers, blocks)),
                               "num_cpus": args.cpus_per_worker, "batch_size": args.batch_size}
    if (args.device or "cpu").startswith("cuda"):
        options["num_gpus"] = 1
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    return dataset.map_batches(actor, fn_constructor_kwargs=constructor, **options)

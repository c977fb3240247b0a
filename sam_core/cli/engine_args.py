"""Command-line flags of the Ray engine, shared by sam-amg and sam-finetune (no Ray import: the parsers are
built whether or not the ray extra is installed)."""

from __future__ import annotations

import argparse


def add_engine_arguments(parser: argparse.ArgumentParser, prog: str, batch_size: int) -> None:
    """``--engine``, ``--num-workers``, ``--cpus-per-worker``, ``--batch-size`` and ``--address``."""
    group = parser.add_argument_group("engine (--engine ray: see docs/distributed.md)")
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process; ray: a pool of Ray actors, one model each (needs "
                            "pip install -e '.[ray]') (default: local)")
    group.add_argument("--num-workers", type=_positive, default=2,
                       help="Ray actors, each holding one model (default: %(default)s)")
    group.add_argument("--cpus-per-worker", type=_positive, default=1,
                       help="CPUs reserved by each actor, and its torch threads (default: %(default)s; with "
                            "--device cuda each actor also takes one GPU)")
    group.add_argument("--batch-size", type=_positive, default=batch_size,
                       help="images handed to an actor per call (default: %(default)s)")
    group.add_argument("--address", help=f"Ray cluster to join (e.g. auto, or HOST:6379); without it {prog} starts "
                                         "a local Ray instance and shuts it down at the end")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value

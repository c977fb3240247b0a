"""``sam-finetune --engine ray``: the fine-tuning embedding cache, precomputed by a pool of Ray actors.

Each actor loads the model once and fills an ``EmbeddingCache`` in the shared cache folder with the images it
is handed (``--batch-size`` per call, encoded together), so the files are the ones the trainer reads:
same names (content hashes), same format, written atomically. Images already cached are not encoded again.
"""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from sam_core.distributed.session import batches_through_actors, ray_session
from sam_core.finetune.annotations import AnnotatedImage
from sam_core.finetune.cache import EmbeddingCache
from sam_core.io.checkpoints import load_sam


class CacheActor:
    """One Ray actor: a model and the embedding cache it fills.

    Args:
        model: what ``load_sam`` takes (registry name, Hugging Face id or folder, checkpoint path).
        device: torch device of the model (None: CPU).
        directory: the cache folder (the one ``EmbeddingCache`` takes, shared by every node).
        storage_dtype: dtype of the stored features (None: the model's).
        batch_size: images encoded together.
        threads: torch threads (the CPUs Ray reserved for this actor).
    """

    def __init__(self, model: str, device: str | None, directory: str | os.PathLike,
                 storage_dtype: torch.dtype | None, batch_size: int, threads: int) -> None:
        torch.set_num_threads(threads)
        self.cache = EmbeddingCache(load_sam(model, device=device, dtype=torch.float32), directory, storage_dtype,
                                    batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = [pickle.loads(item).load_image() for item in batch["image"]]
        missing = [not self.cache.path(self.cache.key(image)).is_file() for image in images]
        keys = self.cache.build(images, progress=False)
        return {"key": np.array(keys), "encoded": np.array(missing),
                "fingerprint": np.array([self.cache.fingerprint] * len(keys))}


def build_cache_on_ray(args: argparse.Namespace, cache: EmbeddingCache, images: Sequence[AnnotatedImage],
                       progress: bool = True) -> int:
    """Fill ``cache`` (the driver's: its model fixes the fingerprint) with ``images`` on Ray, with the model that
    ``args.model`` names and the engine flags of ``sam_core.cli.engine_args``; the number of images
    encoded. ``ValueError`` when an actor's model is not the driver's (another checkpoint or sam_core on a
    node), ``RayMissing`` without the ray extra."""
    if not images:
        return 0
    with ray_session(args.address) as ray:
        items = [{"image": pickle.dumps(image)} for image in images]
        constructor = {"model": args.model, "device": args.device, "directory": cache.directory.parent,
                       "storage_dtype": cache.storage_dtype, "batch_size": args.batch_size,
                       "threads": args.cpus_per_worker}
        results = batches_through_actors(ray, items, CacheActor, constructor, args)
        encoded = 0
        with tqdm(total=len(items), desc="embedding cache (ray)", unit="image", disable=not progress or None) as bar:
            for row in results.iter_rows():
                if row["fingerprint"] != cache.fingerprint:
                    raise ValueError(f"a Ray actor loaded {args.model} as another image encoder than this process "
                                     "(another checkpoint or sam_core version on a node?); its features would not "
                                     "be found")
                encoded += bool(row["encoded"])
                bar.update()
    return encoded

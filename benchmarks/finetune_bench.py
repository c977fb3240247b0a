"""Time per fine-tuning epoch with the embedding cache against a loop that reruns the frozen encoder.

The popular fine-tuning recipe (train the mask decoder, keep the image encoder frozen) still runs the encoder
on every image of every batch. sam_core's trainer runs it once per image, ever, and reads the features from
disk afterwards. Both loops here do exactly the same decoder work: the same images, objects, prompts (one
jittered box per object, ``sam_core.finetune.recipe.image_loss`` with no correction passes, seeded alike),
loss, backward pass and AdamW update per image; only where the features come from differs.

    python benchmarks/finetune_bench.py                      # vit_b, random weights, 8 images of 480x640
    python benchmarks/finetune_bench.py --model vit_tiny --images 16 --epochs 3

Random weights are fine: the time does not depend on them. Prints a markdown table: the first epoch (the
cache is built during it), a later epoch (median over the later epochs), and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

import sam_core
from sam_core.finetune.cache import EmbeddingCache, encode_images
from sam_core.finetune.config import FinetuneConfig
from sam_core.finetune.recipe import image_loss
from sam_core.interface import ImageFeatures
from sam_core.jobs.samples import shapes_training_images
from sam_core.runtime import keep_freed_memory_by_default

# One jittered box per object, one decoder pass: the popular guide's prompt, on the decoder alone.
RECIPE = FinetuneConfig(box_probability=1.0, correction_points=0, mask_only_iterations=0, objects_per_image=8)


def run_epoch(model: sam_core.PromptableSegmenter, images: list, features_of: Callable[[int], ImageFeatures],
              optimizer: torch.optim.Optimizer, epoch: int) -> float:
    """Seconds for one epoch: per image, its features, the recipe's loss, backward, AdamW step."""
    started = time.perf_counter()
    for index, image in enumerate(images):
        rng = np.random.default_rng([epoch, index])  # the same prompts in both loops
        masks = [obj.mask for obj in image.load_objects()][:RECIPE.objects_per_image]
        features = features_of(index)
        optimizer.zero_grad(set_to_none=True)
        image_loss(model, features, masks, RECIPE, rng).total.backward()
        optimizer.step()
    return time.perf_counter() - started


def trainable(model: sam_core.PromptableSegmenter) -> torch.optim.Optimizer:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(model.parameter_roles["mask_decoder"]))
    model.train()
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", help="registry name; built with random weights")
    parser.add_argument("--images", type=int, default=8, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    keep_freed_memory_by_default()
    images = shapes_training_images(args.images, seed=0, sizes=[tuple(args.size)])
    arrays = [image.load_image() for image in images]

    torch.manual_seed(0)
    guide_model = sam_core.build_sam(args.model).to(args.device)
    cached_model = sam_core.build_sam(args.model).to(args.device)
    cached_model.load_state_dict(guide_model.state_dict())

    def encoded_every_time(index: int) -> ImageFeatures:
        with torch.no_grad():
            return encode_images(guide_model, [arrays[index]]).features

    guide_optimizer = trainable(guide_model)
    guide = [run_epoch(guide_model, images, encoded_every_time, guide_optimizer, epoch) for epoch in range(args.epochs)]

    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(cached_model, folder)
        cached_optimizer = trainable(cached_model)
        cached = []
        for epoch in range(args.epochs):
            started = time.perf_counter()
            keys = cache.build(arrays, progress=False)  # encodes in the first epoch only
            built = time.perf_counter() - started
            cached.append(built + run_epoch(cached_model, images, lambda i, keys=keys: cache.load(keys[i]).features,
                                            cached_optimizer, epoch))

    objects = sum(min(len(image.load_objects()), RECIPE.objects_per_image) for image in images)
    print(f"{args.model} (random weights), {args.images} images of {args.size[0]}x{args.size[1]} with {objects} "
          f"objects, decoder trained, one box prompt per object; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, device {args.device}\n")
    later = (lambda times: statistics.median(times[1:])) if args.epochs > 1 else (lambda times: float("nan"))
    print("| loop | epoch 1 (s) | later epochs (s) | per image, later (s) |")
    print("|---|---:|---:|---:|")
    for name, times in (("encoder every batch (guide)", guide), ("embedding cache (sam_core)", cached)):
        print(f"| {name} | {times[0]:.1f} | {later(times):.2f} | {later(times) / args.images:.3f} |")
    if args.epochs > 1:
        print(f"\nlater epochs: the cache is {later(guide) / later(cached):.1f}x faster; over {args.epochs} epochs "
              f"{sum(guide) / sum(cached):.1f}x")


if __name__ == "__main__":
    main()

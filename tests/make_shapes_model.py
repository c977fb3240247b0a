"""Train the tiny SAM config briefly on synthetic shapes, so that its masks depend on the prompt.

Random weights give nearly the same mask for every point prompt, and NMS then leaves one mask: useless for
checking that the automatic mask generator returns the reference's mask *set*. Two thousand steps of
training on coloured rectangles and ellipses over noise, with a point prompt inside one shape, teach the
model to return that shape (and to score its masks), which is all the parity tests need. The images come
from sam_core.jobs.samples.draw_shapes_image, which also draws the sample scenes that `sam-samples` writes.

    .venv/bin/python tests/make_shapes_model.py            # writes weights/sam_vit_tiny_shapes.safetensors

Seeded and single-threaded, so the weights are reproducible; 2000 steps take about 5 to 10 minutes on one
CPU core. The file holds a plain state dict with Meta's key names (2 MB), so sam_core, load_sam and
segment_anything all load it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from sam_core import build_sam
from sam_core.jobs.samples import draw_shapes_image

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "weights" / "sam_vit_tiny_shapes.safetensors"


def _training_batch(rng: np.random.Generator, image_size: int, n_images: int,
                    prompts_per_image: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, points (P, 2) x/y, target masks (P, H, W)) triples, images with the long side = image_size."""
    batch = []
    for _ in range(n_images):
        short = int(rng.integers(image_size // 2, image_size + 1))
        height, width = (short, image_size) if rng.random() < 0.5 else (image_size, short)
        image, masks = draw_shapes_image(rng, height, width, n_shapes=int(rng.integers(2, 7)))
        chosen = rng.integers(0, len(masks), size=prompts_per_image)
        points, targets = [], []
        for index in chosen:
            ys, xs = np.nonzero(masks[index])
            pick = int(rng.integers(0, len(xs)))
            points.append((xs[pick], ys[pick]))
            targets.append(masks[index])
        batch.append((image, np.array(points, dtype=np.float64), np.stack(targets)))
    return batch


def _multimask_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + dice of the best of the three masks (SAM's loss for ambiguous prompts), MSE on the IoU head."""
    target = target[:, None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(-2, -1))
    probs = logits.sigmoid()
    dice = 1 - (2 * (probs * target).sum(dim=(-2, -1)) + 1) / (probs.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1)) + 1)
    mask_loss = (bce + dice).min(dim=1).values.mean()
    with torch.no_grad():
        binary = logits > 0
        intersection = (binary & (target > 0.5)).sum(dim=(-2, -1)).float()
        union = (binary | (target > 0.5)).sum(dim=(-2, -1)).float()
        true_iou = intersection / union.clamp(min=1)
    return mask_loss + F.mse_loss(iou_pred, true_iou)


def train(steps: int, seed: int, learning_rate: float) -> dict[str, torch.Tensor]:
    # One thread: the result does not depend on the machine's core count, and on a shared 2-core machine
    # it is also faster than two threads fighting over the cores.
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sam = build_sam("vit_tiny").train()
    image_size = sam.image_encoder.img_size
    optimizer = torch.optim.AdamW(sam.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    dense_pe = None
    for step in range(steps):
        batch = _training_batch(rng, image_size, n_images=4, prompts_per_image=8)
        images = torch.stack([sam.preprocess(torch.as_tensor(image).permute(2, 0, 1).float())
                              for image, _, _ in batch])
        embeddings = sam.image_encoder(images)
        dense_pe = sam.prompt_encoder.get_dense_pe()
        loss = torch.zeros(())
        for embedding, (_, points, targets) in zip(embeddings, batch):
            coords = torch.as_tensor(points)[:, None, :]
            labels = torch.ones(coords.shape[:2], dtype=torch.int)
            sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            logits, iou_pred = sam.mask_decoder(embedding[None], dense_pe, sparse, dense, multimask_output=True)
            # Targets padded to the square input, then brought to the low-res mask size.
            padded = np.zeros((len(targets), image_size, image_size), dtype=np.float32)
            padded[:, : targets.shape[1], : targets.shape[2]] = targets
            low_res_target = F.interpolate(torch.from_numpy(padded)[:, None], size=logits.shape[-2:],
                                           mode="area")[:, 0]
            loss = loss + _multimask_loss(logits, iou_pred, (low_res_target > 0.5).float())
        optimizer.zero_grad()
        (loss / len(batch)).backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item() / len(batch):.4f}", flush=True)
    return {name: tensor.detach().contiguous() for name, tensor in sam.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    started = time.perf_counter()
    state = train(args.steps, args.seed, args.lr)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.output), metadata={"format": "pt", "model_type": "vit_tiny",
                                                 "note": "trained on synthetic shapes by tests/make_shapes_model.py"})
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

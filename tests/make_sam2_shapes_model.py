"""Make a tiny SAM 2 model (the ``sam2_hiera_test`` config) whose masks depend on the prompt.

The SAM 2 counterpart of ``tests/make_shapes_model.py`` (same images: coloured rectangles and ellipses over
noise, a positive point inside one shape): random weights give nearly the same mask for every point, which
would leave the automatic-mask-generator parity tests one mask to compare.

Trained from scratch the way the SAM model is, this SAM 2 config did not learn the task in 1500 steps (its
masks stayed the same for every prompt), so it starts from the trained SAM shapes model instead:

1. Its prompt encoder and mask decoder are copied from ``weights/sam_vit_tiny_shapes.safetensors`` (same
   widths; the wider MLPs of SAM 2's decoder are zero-padded, which computes the same function; the
   high-resolution skip convolutions start at zero, so they add nothing at first).
2. The Hiera encoder is distilled from that model's ViT encoder: mean squared error between the two image
   embeddings of square shape images (where SAM's resize-and-pad and SAM 2's stretch see the same pixels).
3. Everything is fine-tuned with SAM's loss on the best multimask output, the single-mask output, an MSE on
   the IoU head (SAM 2 squashes it with a sigmoid) and a BCE on the object score; a quarter of the prompts
   also get the low-res mask of a first pass as mask input, so that mask-to-mask refinement (``use_m2m``)
   has something to refine.

    .venv/bin/python tests/make_sam2_shapes_model.py     # writes weights/sam2_hiera_test_shapes.safetensors

Seeded and single-threaded, so the weights are reproducible. The file is sam_core's format (``save_sam``:
Meta's names, the config in the metadata) in float16 (3 MB); load it with ``load_sam(path,
dtype=torch.float32)``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from make_shapes_model import draw_shapes_image

from sam_core import build_sam, load_sam, save_sam

SAM_SHAPES = Path(__file__).resolve().parents[1] / "weights" / "sam_vit_tiny_shapes.safetensors"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "weights" / "sam2_hiera_test_shapes.safetensors"
CONFIG = "sam2_hiera_test"


def _training_batch(rng: np.random.Generator, image_size: int, n_images: int,
                    prompts_per_image: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, points (P, 2) x/y in image pixels, target masks (P, H, W)) of images of various aspect ratios."""
    batch = []
    for _ in range(n_images):
        height, width = (int(v) for v in rng.integers(image_size // 2, 2 * image_size, size=2))
        image, masks = draw_shapes_image(rng, height, width, n_shapes=int(rng.integers(2, 7)))
        points, targets = [], []
        for index in rng.integers(0, len(masks), size=prompts_per_image):
            ys, xs = np.nonzero(masks[index])
            pick = int(rng.integers(0, len(xs)))
            points.append((xs[pick], ys[pick]))
            targets.append(masks[index])
        batch.append((image, np.array(points, dtype=np.float64), np.stack(targets)))
    return batch


def _mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + dice per mask, (P, M)."""
    target = target[:, None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(-2, -1))
    probs = logits.sigmoid()
    dice = 1 - (2 * (probs * target).sum(dim=(-2, -1)) + 1) / (probs.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1)) + 1)
    return bce + dice


def _true_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        binary, truth = logits > 0, target[:, None] > 0.5
        return (binary & truth).sum(dim=(-2, -1)).float() / (binary | truth).sum(dim=(-2, -1)).float().clamp(min=1)


def _padded(weight: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``weight`` in the top-left corner of zeros of ``shape``: a wider layer computing the same function."""
    out = weight.new_zeros(shape)
    out[tuple(slice(0, size) for size in weight.shape)] = weight
    return out


def transplant(model: torch.nn.Module, sam: torch.nn.Module) -> None:
    """Copy SAM's prompt encoder and mask decoder into the SAM 2 model (see the module docstring)."""
    ours = model.state_dict()
    renamed = {}
    for name, tensor in sam.state_dict().items():
        if name.startswith("image_encoder."):
            continue
        name = name.replace("prompt_encoder.", "sam_prompt_encoder.").replace("mask_decoder.", "sam_mask_decoder.")
        name = name.replace(".mlp.lin1.", ".mlp.layers.0.").replace(".mlp.lin2.", ".mlp.layers.1.")
        renamed[name] = _padded(tensor, ours[name].shape)
    decoder = model.sam_mask_decoder
    with torch.no_grad():
        model.load_state_dict(renamed, strict=False)
        for conv in (decoder.conv_s0, decoder.conv_s1):
            conv.weight.zero_()
            conv.bias.zero_()


def distill(model: torch.nn.Module, sam: torch.nn.Module, rng: np.random.Generator, steps: int,
            learning_rate: float) -> None:
    """Train the SAM 2 image encoder to give the SAM encoder's embedding of square images."""
    parameters = list(model.image_encoder.parameters()) + [model.no_mem_embed]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    size = model.image_size
    for step in range(steps):
        images = [draw_shapes_image(rng, size, size, n_shapes=int(rng.integers(2, 7)))[0] for _ in range(8)]
        pixels = torch.stack([torch.as_tensor(image).permute(2, 0, 1) for image in images])
        with torch.no_grad():
            target = sam.image_encoder(sam.preprocess(pixels.float()))
        embedding, _ = model.encode_image(model.preprocess(pixels))
        loss = F.mse_loss(embedding, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"distill {step:4d}  loss {loss.item():.4f}", flush=True)


def train(steps: int, seed: int, learning_rate: float, distill_steps: int = 0) -> torch.nn.Module:
    """The model after ``distill_steps`` of transplant and distillation (none: from scratch) and ``steps`` of
    fine-tuning on the shapes."""
    torch.set_num_threads(1)  # reproducible, and no faster with two threads on a shared 2-core machine
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_sam(CONFIG).train()
    if distill_steps:
        sam = load_sam(SAM_SHAPES).eval()
        transplant(model, sam)
        distill(model, sam, rng, distill_steps, 2e-3)
    if not steps:
        return model.eval()
    transform, decoder = model.transform, model.sam_mask_decoder
    image_size, low_res_size = model.image_size, model.mask_input_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        batch = _training_batch(rng, image_size, n_images=4, prompts_per_image=8)
        images = torch.cat([model.preprocess(torch.as_tensor(image).permute(2, 0, 1)[None]) for image, _, _ in batch])
        embeddings, high_res = model.encode_image(images)
        dense_pe = model.sam_prompt_encoder.get_dense_pe()
        loss = torch.zeros(())
        for index, (image, points, targets) in enumerate(batch):
            coords = torch.as_tensor(transform.apply_coords(points, image.shape[:2]))[:, None, :]
            labels = torch.ones(coords.shape[:2], dtype=torch.int)
            # Targets stretched like the image, to the low-res mask size.
            target = F.interpolate(torch.from_numpy(targets.astype(np.float32))[:, None], size=(low_res_size,) * 2,
                                   mode="area")[:, 0]
            target = (target > 0.5).float()
            features = [level[index:index + 1] for level in high_res]
            sparse, dense = model.embed_prompts(coords, labels)
            logits, iou_pred, _, object_scores = decoder(embeddings[index:index + 1], dense_pe, sparse, dense,
                                                         multimask_output=True, high_res_features=features)
            losses = _mask_loss(logits, target)
            loss = loss + losses.min(dim=1).values.mean() + F.mse_loss(iou_pred, _true_iou(logits, target))
            single, single_iou, _, single_object = decoder(embeddings[index:index + 1], dense_pe, sparse, dense,
                                                           multimask_output=False, high_res_features=features)
            loss = loss + _mask_loss(single, target).mean() + F.mse_loss(single_iou, _true_iou(single, target))
            loss = loss + F.binary_cross_entropy_with_logits(object_scores, torch.ones_like(object_scores))
            # A second pass from the best first mask (mask-to-mask refinement).
            refine = slice(0, len(points) // 4)
            best = logits[refine].gather(1, losses[refine].argmin(dim=1)[:, None, None, None].expand(
                -1, 1, *logits.shape[-2:])).detach()
            sparse, dense = model.embed_prompts(coords[refine], labels[refine], mask_input=best)
            refined, refined_iou, _, _ = decoder(embeddings[index:index + 1], dense_pe, sparse, dense,
                                                 multimask_output=False, high_res_features=features)
            loss = loss + _mask_loss(refined, target[refine]).mean()
            loss = loss + F.mse_loss(refined_iou, _true_iou(refined, target[refine]))
        optimizer.zero_grad()
        (loss / len(batch)).backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item() / len(batch):.4f}", flush=True)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distill-steps", type=int, default=600)
    parser.add_argument("--steps", type=int, default=400, help="fine-tuning steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-4, help="fine-tuning learning rate")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    started = time.perf_counter()
    model = train(args.steps, args.seed, args.lr, distill_steps=args.distill_steps)
    save_sam(model.half(), args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""mit-han-lab's EfficientViT-SAM reference (``efficientsam==1.0.0``) with random weights, for parity tests and
benchmarks. Builds the reference's own models without weights (``pretrained=False``): nothing is downloaded."""

from __future__ import annotations

import math

import torch

REFERENCE_NAMES = {f"efficientvit_sam_{size}": f"efficientvit-sam-{size}" for size in ("l0", "l1", "l2", "xl0", "xl1")}


def make_reference_efficientvit_sam(name: str, encoder_image_size: int | None = None, seed: int = 0) -> torch.nn.Module:
    """The reference model of registry ``name`` (eps 1e-6 on every norm, as its zoo builds it) with every
    tensor random: weights at unit-preserving scale, norms' affine parameters, biases and BatchNorm running
    statistics around their usual values. ``encoder_image_size`` overrides the encoder input (512 / 1024)."""
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from efficientsam.sam_model_zoo import create_efficientvit_sam_model

    sizes = {} if encoder_image_size is None else {"image_size": encoder_image_size}
    model = create_efficientvit_sam_model(REFERENCE_NAMES[name], pretrained=False, **sizes)
    randomize_(model, seed)
    return model.eval()


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter and buffer of ``model`` random values (in place)."""
    generator = torch.Generator().manual_seed(seed)

    def normal(tensor: torch.Tensor, std: float, mean: float = 0.0) -> torch.Tensor:
        return mean + std * torch.randn(tensor.shape, generator=generator)

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                tensor.copy_(torch.randint(0, 1000, tensor.shape, generator=generator))
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean") or tensor.dim() == 1 and not name.endswith("weight"):
                tensor.copy_(normal(tensor, 0.1))
            elif tensor.dim() == 1:  # norm scales
                tensor.copy_(normal(tensor, 0.1, 1.0))
            elif "positional_encoding_gaussian_matrix" in name:
                tensor.copy_(normal(tensor, 1.0))
            else:
                tensor.copy_(normal(tensor, 1 / math.sqrt(tensor[0].numel())))

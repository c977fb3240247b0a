"""LoRA on the image encoder's attention: each ``qkv`` projection gains a trainable low-rank update.

``W x + b`` becomes ``W x + b + (alpha / rank) * B A x`` with A (rank x in) and B (out x rank); B starts at
zero, so training starts from the unchanged model. ``merged_state_dict`` folds ``W + (alpha / rank) B A``
back into the projection, which gives a plain checkpoint of the family (the saved files never hold
adapters). With LoRA the encoder changes at every step, so its features cannot be cached: the encoder runs
on every image of every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.finetune.parts import IMAGE_ENCODER, role_of
from sam_core.interface import PromptableSegmenter

LORA_TARGETS = ("qkv",)  # attention input projections of SAM's ViT and SAM 2's Hiera


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable rank-``rank`` update scaled by ``alpha / rank``.

    Args:
        base: the layer to adapt (its parameters are frozen).
        rank: rank of the update.
        alpha: scale numerator; the update is multiplied by ``alpha / rank``.
        generator: the random source of A's initialisation (default: torch's global one).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(base.weight.new_empty((rank, base.in_features)))
        self.lora_b = nn.Parameter(base.weight.new_zeros((base.out_features, rank)))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5), generator=generator)  # nn.Linear's initialisation

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        # Encoders read the bias directly as the projection of a zero padding token, which the update keeps.
        return self.base.bias

    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + self.scale * (self.lora_b @ self.lora_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_a), self.lora_b)


def add_lora(model: PromptableSegmenter, rank: int, alpha: float, seed: int | None = None) -> list[str]:
    """Wrap every ``qkv`` linear layer of the image encoder in a ``LoRALinear`` (in place); returns their names.
    ``seed`` seeds the adapters' initialisation (default: torch's global random state)."""
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in LORA_TARGETS
             and role_of(model, f"{name}.weight") == IMAGE_ENCODER]
    if not found:
        raise ValueError(f"no attention projection named {LORA_TARGETS} in this {model.family} model's image encoder")
    generator = None if seed is None else torch.Generator(device=model.device).manual_seed(seed)
    for name, module in found:
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, LoRALinear(module, rank, alpha, generator))
    return [name for name, _ in found]


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with every adapter folded into its layer, under the plain layer's names."""
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    for name, module in lora_modules(model).items():
        for key in ("base.weight", "base.bias", "lora_a", "lora_b"):
            state.pop(f"{name}.{key}", None)
        state[f"{name}.weight"] = module.merged_weight().detach()
        if module.bias is not None:
            state[f"{name}.bias"] = module.bias.detach()
    return state


def merge_lora(model: nn.Module) -> None:
    """Replace every adapter by a plain linear layer holding the merged weight (in place)."""
    for name, module in lora_modules(model).items():
        merged = module.base
        with torch.no_grad():
            merged.weight.copy_(module.merged_weight())
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, merged)

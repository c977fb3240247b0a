"""EfficientViT-SAM checkpoints: recognising their tensor names and reading the config back from their shapes."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

import torch

from sam_core.errors import CheckpointError
from sam_core.models.configs import decoder_fields, shape_readers
from sam_core.models.efficientvit.config import EFFICIENTVIT_SAM_CONFIGS, EfficientViTSamConfig

BACKBONE = "image_encoder.backbone.stages."
NECK = "image_encoder.neck."
# What a block's first convolution is called, by block kind.
_FIRST_CONV = {"conv1": "res", "spatial_conv": "fmb", "inverted_conv": "mb"}


def is_efficientvit_sam_checkpoint(names: Collection[str]) -> bool:
    """The reference's names: an EfficientViT backbone under the image encoder."""
    return any(name.startswith(BACKBONE) for name in names)


def infer_efficientvit_sam_config(state_dict: Mapping[str, torch.Tensor],
                                  origin: str = "state dict") -> EfficientViTSamConfig:
    """The config whose shapes produce ``state_dict`` (the reference's names).

    Shapes cannot tell the encoder input size, the norms' eps or the decoder's heads: a checkpoint whose
    shapes are a released model's gets that model's values; otherwise 512 for five stages and 1024 for six
    (as the released L and XL models), eps 1e-6 and 8 heads.
    """
    shape, count = shape_readers(state_dict, origin, "an EfficientViT-SAM")

    def block_kind(prefix: str) -> str:
        for conv, kind in _FIRST_CONV.items():
            if f"{prefix}.main.{conv}.conv.weight" in state_dict:
                return kind
        raise CheckpointError(f"{origin}: unknown block at {prefix} (no conv1, spatial_conv or inverted_conv)")

    def first_conv(prefix: str, kind: str) -> str:
        return f"{prefix}.main.{next(c for c, k in _FIRST_CONV.items() if k == kind)}.conv"

    widths, depths, kinds, expands, fewer_norm = [], [], [], [], []
    head_dim = 32
    width = 3
    for stage in range(count(BACKBONE)):
        prefix = f"{BACKBONE}{stage}.op_list"
        depth = count(prefix + ".") - 1
        if stage == 0:
            width = shape(f"{prefix}.0.conv.weight")[0]
            kind = block_kind(f"{prefix}.1") if depth else "res"
            expand = shape(f"{first_conv(f'{prefix}.1', kind)}.weight")[0] / width if depth else 1
            fewer = depth > 0 and f"{first_conv(f'{prefix}.1', kind)}.bias" in state_dict
        else:
            opening = block_kind(f"{prefix}.0")
            out = shape(f"{prefix}.0.main.{'conv2' if opening == 'res' else 'point_conv'}.conv.weight")[0]
            fewer = f"{first_conv(f'{prefix}.0', opening)}.bias" in state_dict
            expand = shape(f"{first_conv(f'{prefix}.0', opening)}.weight")[0] / width / 4
            attention = f"{prefix}.1.context_module.main.qkv.conv.weight"
            if depth and attention in state_dict:
                aggregation = shape(f"{prefix}.1.context_module.main.aggreg.0.0.weight")
                head_dim = shape(f"{prefix}.1.context_module.main.aggreg.0.1.weight")[1]
                kind = f"att@{aggregation[-1]}"
                expand = shape(f"{prefix}.1.local_module.main.inverted_conv.conv.weight")[0] / out
            elif depth:
                kind = block_kind(f"{prefix}.1")
                expand = shape(f"{first_conv(f'{prefix}.1', kind)}.weight")[0] / out
            else:
                kind = opening
            width = out
        widths.append(width)
        depths.append(depth)
        kinds.append(kind)
        expands.append(expand)
        fewer_norm.append(fewer)

    neck_inputs = [shape(f"{NECK}input_ops.{i}.op_list.0.conv.weight") for i in range(count(NECK + "input_ops."))]
    try:
        # The last stage of each width (the released models' widths are all different).
        neck_stages = tuple(max(s for s, w in enumerate(widths) if w == conv[1]) for conv in neck_inputs)
    except ValueError:
        raise CheckpointError(f"{origin}: the neck reads a width that no backbone stage has") from None
    neck_width = neck_inputs[0][0] if neck_inputs else 0
    try:
        config = EfficientViTSamConfig(
            encoder_image_size=512 if len(widths) == 5 else 1024,
            widths=tuple(widths), depths=tuple(depths), block_kinds=tuple(kinds),
            expand_ratios=tuple(expands), fewer_norm=tuple(fewer_norm), attention_head_dim=head_dim,
            neck_stages=neck_stages, neck_width=neck_width, neck_depth=count(NECK + "middle.op_list."),
            neck_expand_ratio=shape(f"{NECK}middle.op_list.0.main.spatial_conv.conv.weight")[0] / neck_width,
            prompt_embed_dim=shape(f"{NECK}output_ops.0.op_list.0.conv.weight")[0],
            **decoder_fields(shape, count),
        )
    except ValueError as error:
        raise CheckpointError(f"{origin}: tensor shapes describe no valid EfficientViT-SAM model ({error})") from None
    for known in EFFICIENTVIT_SAM_CONFIGS.values():
        if dataclasses.replace(known, encoder_image_size=config.encoder_image_size) == config:
            return known
    return config

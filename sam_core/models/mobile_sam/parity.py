"""MobileSAM's reference (``mobilesam-mirror``, the MobileSAM repository's package) built with the shapes of a
MobileSamConfig and random weights, for parity tests and benchmarks.

Needs ``pip install mobilesam-mirror==1.0.0 timm`` (part of the ``test`` extra). The reference encoder
works at 1024 pixels with a 256-channel neck only (it reshapes its output to a 64x64 grid).
"""

from __future__ import annotations

from typing import Any

import torch

from sam_core.models.mobile_sam.config import MobileSamConfig
from sam_core.models.sam.parity import randomize_every_tensor_
from sam_core.models.tiny_vit.config import TinyViTConfig


def reference_tiny_vit(module: Any, config: TinyViTConfig) -> torch.nn.Module:
    """``module.TinyViT`` (MobileSAM's or segment-anything-hq's copy) with the shapes of ``config``."""
    if config.image_size != 1024 or config.out_chans != 256:
        raise ValueError("the reference TinyViT supports image_size 1024 and out_chans 256 only")
    return module.TinyViT(
        img_size=config.image_size, in_chans=3, num_classes=1000, embed_dims=list(config.embed_dims),
        depths=list(config.depths), num_heads=list(config.num_heads), window_sizes=list(config.window_sizes),
        mlp_ratio=config.mlp_ratio, drop_rate=0.0, drop_path_rate=0.0, mbconv_expand_ratio=config.mbconv_expand_ratio,
        local_conv_size=config.local_conv_size, layer_lr_decay=0.8)


def reference_prompt_and_decoder(module: Any, config: Any, decoder: type, **extra: Any) -> dict[str, Any]:
    """Keyword arguments of a reference ``Sam``: prompt encoder, mask decoder (of class ``decoder``), pixel
    statistics, from a config with SamConfig's decoder fields."""
    grid = config.embedding_size
    size = config.image_size
    dim = config.prompt_embed_dim
    return dict(
        prompt_encoder=module.PromptEncoder(
            embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(size, size),
            mask_in_chans=config.mask_in_chans),
        mask_decoder=decoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=module.TwoWayTransformer(
                depth=config.decoder_depth, embedding_dim=dim,
                mlp_dim=config.decoder_mlp_dim, num_heads=config.decoder_num_heads),
            transformer_dim=dim, iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim, **extra),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )


def make_reference_mobile_sam(config: MobileSamConfig, seed: int = 0) -> torch.nn.Module:
    """MobileSAM's Sam with the shapes of ``config`` and every tensor random (eval mode)."""
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from mobile_sam import modeling

    torch.manual_seed(seed)
    sam = modeling.Sam(image_encoder=reference_tiny_vit(modeling, config.encoder),
                       **reference_prompt_and_decoder(modeling, config, modeling.MaskDecoder))
    randomize_every_tensor_(sam, seed)
    # eval() caches TinyViT's expanded attention biases: after the weights are set.
    return sam.eval()

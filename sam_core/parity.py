"""Meta's reference model built with the shapes and weights of a sam_core model, for parity tests and benchmarks.

Needs the reference package: ``pip install segment-anything==1.0`` (part of the ``test`` extra).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from sam_core.config import SamConfig


def make_reference_sam(config: SamConfig, seed: int = 0) -> torch.nn.Module:
    """Meta's Sam with the shapes of ``config`` and random, non-degenerate weights (eval mode)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    grid = config.image_size // config.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth, embed_dim=config.encoder_embed_dim, img_size=config.image_size,
            mlp_ratio=config.encoder_mlp_ratio, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads, patch_size=config.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=config.encoder_global_attn_indexes, window_size=config.window_size,
            out_chans=config.prompt_embed_dim),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size), mask_in_chans=config.mask_in_chans),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_embed_dim,
                                          mlp_dim=config.decoder_mlp_dim, num_heads=config.decoder_num_heads),
            transformer_dim=config.prompt_embed_dim, iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    with torch.no_grad():
        for name, param in sam.named_parameters():
            if param.dim() >= 2 and "rel_pos" not in name and "pos_embed" not in name:
                continue  # default init of weight matrices keeps activations in range
            param.add_(0.1 * torch.randn_like(param))
    return sam.eval()


def save_reference_pth(sam: torch.nn.Module, path: Path) -> Path:
    """Write the state dict the way Meta's official checkpoints are written."""
    torch.save(sam.state_dict(), path)
    return path

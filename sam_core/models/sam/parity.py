"""Meta's reference model built with the shapes and weights of a sam_core model, for parity tests and benchmarks.

Needs the reference package: ``pip install segment-anything==1.0`` (part of the ``test`` extra).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from sam_core.models.sam.config import SamConfig, get_config


def make_reference_sam(config: SamConfig, seed: int = 0) -> torch.nn.Module:
    """Meta's Sam with the shapes of ``config`` and random, non-degenerate weights (eval mode)."""
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
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
    _perturb_(sam)
    return sam.eval()


def save_reference_pth(sam: torch.nn.Module, path: Path) -> Path:
    """Write the state dict the way Meta's official checkpoints are written."""
    torch.save(sam.state_dict(), path)
    return path


def _perturb_(model: torch.nn.Module) -> None:
    """Move zero/one-initialised tensors away from their init; leave weight matrices as initialised."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "rel_pos" not in name and "pos_embed" not in name:
                continue
            param.add_(0.1 * torch.randn_like(param))


def make_reference_sam_from(sam: torch.nn.Module) -> torch.nn.Module:
    """Meta's reference model carrying exactly the weights of a sam_core ``Sam``."""
    reference = make_reference_sam(sam.config)
    reference.load_state_dict(sam.state_dict())
    return reference.to(sam.device, sam.dtype)


def hf_config_parts(config: SamConfig) -> dict[str, dict[str, Any]]:
    """The ``vision_config``, ``prompt_encoder_config`` and ``mask_decoder_config`` of transformers' SamConfig
    (or SamHQConfig, which adds to them) with the shapes of ``config``."""
    return dict(
        vision_config=dict(
            hidden_size=config.encoder_embed_dim, output_channels=config.prompt_embed_dim,
            num_hidden_layers=config.encoder_depth, num_attention_heads=config.encoder_num_heads,
            image_size=config.image_size, patch_size=config.patch_size, mlp_ratio=config.encoder_mlp_ratio,
            window_size=config.window_size, global_attn_indexes=list(config.encoder_global_attn_indexes),
            num_pos_feats=config.prompt_embed_dim // 2),
        prompt_encoder_config=dict(hidden_size=config.prompt_embed_dim, image_size=config.image_size,
                                   patch_size=config.patch_size, mask_input_channels=config.mask_in_chans),
        mask_decoder_config=dict(hidden_size=config.prompt_embed_dim, mlp_dim=config.decoder_mlp_dim,
                                 num_hidden_layers=config.decoder_depth, num_attention_heads=config.decoder_num_heads,
                                 num_multimask_outputs=config.num_multimask_outputs,
                                 iou_head_depth=config.iou_head_depth, iou_head_hidden_dim=config.iou_head_hidden_dim),
    )


def make_hf_sam(config: SamConfig | str, seed: int = 0) -> torch.nn.Module:
    """transformers' SamModel with the shapes of ``config`` and random, non-degenerate weights (eval mode)."""
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from transformers import SamConfig as HFSamConfig
    from transformers import SamModel


    config = get_config(config)
    hf_config = HFSamConfig(**hf_config_parts(config))
    torch.manual_seed(seed)
    model = SamModel(hf_config)
    with torch.no_grad():
        # transformers initialises the vision weights with std 1e-10, which leaves every activation at its
        # bias; trained-like scales exercise the whole network. The Fourier matrix gets Meta's scale of 1.
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "pos_embed" not in name and "rel_pos" not in name:
                param.normal_(0.0, 0.02)
        model.shared_image_embedding.positional_embedding.normal_()
    _perturb_(model)
    return model.eval()


def randomize_every_tensor_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every floating-point tensor of ``model``'s state dict random values of trained-like scale, so
    that no zero- or one-initialised tensor (biases, norms, tokens, bias tables, BatchNorm statistics) hides
    a difference: matrices ~ N(0, 1/fan_in), attention-bias tables ~ N(0, 0.25), norm scales ~ 1 + N(0, 0.01),
    other vectors ~ N(0, 0.01), BatchNorm running variances ~ U(0.5, 1.5)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator).to(tensor)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator).to(tensor))
            elif "attention_biases" in name:
                tensor.copy_(0.5 * noise)
            elif tensor.dim() >= 2:
                tensor.copy_(noise / tensor[0].numel() ** 0.5)
            elif name.endswith("weight") and "norm" in name or name.endswith("bn.weight"):
                tensor.copy_(1 + 0.1 * noise)
            else:
                tensor.copy_(0.1 * noise)
    return model

"""SAM-HQ's references built with the shapes of a SamHQConfig and random weights, for parity tests and
benchmarks: segment-anything-hq's Sam (``pip install segment-anything-hq==0.3 timm``, in the ``test`` extra)
and transformers' SamHQModel."""

from __future__ import annotations

from functools import partial

import torch

from sam_core.models.mobile_sam.parity import reference_prompt_and_decoder, reference_tiny_vit
from sam_core.models.sam.config import SamConfig
from sam_core.models.sam.parity import hf_config_parts, randomize_every_tensor_
from sam_core.models.sam_hq.config import SamHQConfig


def make_reference_sam_hq(config: SamHQConfig, seed: int = 0) -> torch.nn.Module:
    """segment-anything-hq's Sam with the shapes of ``config`` and every tensor random (eval mode)."""
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from segment_anything_hq import modeling

    torch.manual_seed(seed)
    base = config.base
    if config.uses_tiny_vit:
        encoder = reference_tiny_vit(modeling, base.encoder)
    else:
        encoder = modeling.ImageEncoderViT(
            depth=base.encoder_depth, embed_dim=base.encoder_embed_dim, img_size=base.image_size,
            mlp_ratio=base.encoder_mlp_ratio, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=base.encoder_num_heads, patch_size=base.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=base.encoder_global_attn_indexes, window_size=base.window_size,
            out_chans=base.prompt_embed_dim)
    sam = modeling.Sam(image_encoder=encoder, **reference_prompt_and_decoder(
        modeling, base, modeling.MaskDecoderHQ, vit_dim=config.vit_dim))
    randomize_every_tensor_(sam, seed)
    return sam.eval()  # after the weights: eval() caches TinyViT's expanded attention biases


def make_hf_sam_hq(base: SamConfig, seed: int = 0) -> torch.nn.Module:
    """transformers' SamHQModel with the shapes of a ViT SAM-HQ and every tensor random (eval mode)."""
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from transformers import SamHQConfig as HFSamHQConfig
    from transformers import SamHQModel

    parts = hf_config_parts(base)
    hf_config = HFSamHQConfig(
        vision_config={**parts["vision_config"], "mlp_dim": int(base.encoder_embed_dim * base.encoder_mlp_ratio)},
        prompt_encoder_config=parts["prompt_encoder_config"],
        mask_decoder_config={**parts["mask_decoder_config"], "vit_dim": base.encoder_embed_dim,
                             "layer_norm_eps": 1e-5},  # Meta's (torch's default) in the decoder's transformer
    )
    torch.manual_seed(seed)
    model = SamHQModel(hf_config)
    randomize_every_tensor_(model, seed)
    with torch.no_grad():  # tied to the shared copy, which the state dict may list under either name
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)
    return model.eval()

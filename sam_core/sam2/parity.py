"""Meta's SAM 2 reference built with the shapes of a Sam2Config and random weights, for parity tests.

Needs the reference package (``SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0``). The
reference is built from its own SAM 2.1 Hydra config with the image-model sizes overridden, so that its
state dict carries every video-only tensor of an official checkpoint too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sam_core.sam2.config import Sam2Config

REFERENCE_CONFIG_FILE = "configs/sam2.1/sam2.1_hiera_t.yaml"


def reference_overrides(config: Sam2Config) -> list[str]:
    """Hydra overrides giving the reference's SAM 2.1 config the image-model shapes of ``config``."""
    def listed(values: tuple) -> str:
        return "[" + ",".join(str(v) for v in values) + "]"

    trunk, neck = "++model.image_encoder.trunk.", "++model.image_encoder.neck."
    extra = "++model.sam_mask_decoder_extra_args."
    return [
        f"++model.image_size={config.image_size}",
        f"{trunk}embed_dim={config.embed_dim}", f"{trunk}num_heads={config.num_heads}",
        f"{trunk}stages={listed(config.stages)}", f"{trunk}q_pool={config.q_pool}",
        f"{trunk}window_spec={listed(config.window_spec)}",
        f"{trunk}global_att_blocks={listed(config.global_att_blocks)}",
        f"{trunk}window_pos_embed_bkg_spatial_size={listed(config.window_pos_embed_bkg_spatial_size)}",
        f"{neck}d_model={config.d_model}", f"{neck}position_encoding.num_pos_feats={config.d_model}",
        f"{neck}backbone_channel_list={listed(config.backbone_channel_list)}",
        f"{neck}fpn_top_down_levels={listed(config.fpn_top_down_levels)}",
        f"{neck}fpn_interp_model={config.fpn_interp_mode}",
        f"++model.image_encoder.scalp={config.scalp}",
        f"++model.use_high_res_features_in_sam={config.use_high_res_features}",
        f"++model.iou_prediction_use_sigmoid={config.iou_prediction_use_sigmoid}",
        f"++model.pred_obj_scores={config.pred_obj_scores}",
        f"++model.pred_obj_scores_mlp={config.pred_obj_scores_mlp}",
        # The video model's fixed "no object" pointer needs the object-score head.
        f"++model.fixed_no_obj_ptr={config.pred_obj_scores}",
        f"++model.use_multimask_token_for_obj_ptr={config.use_multimask_token_for_obj_ptr}",
        f"++model.directly_add_no_mem_embed={config.directly_add_no_mem_embed}",
        f"{extra}dynamic_multimask_via_stability={config.dynamic_multimask_via_stability}",
        f"{extra}dynamic_multimask_stability_delta={config.dynamic_multimask_stability_delta}",
        f"{extra}dynamic_multimask_stability_thresh={config.dynamic_multimask_stability_thresh}",
    ]


def make_reference_sam2(config: Sam2Config, seed: int = 0) -> torch.nn.Module:
    """Meta's SAM2Base with the image-model shapes of ``config`` and random, non-degenerate weights (eval).

    The decoder sizes the reference hard-codes (mask_in_chans 16, depth 2, 8 heads, MLP 2048, IoU head
    3 x 256, 3 multimask outputs) must be the config's.
    """
    from sam2.build_sam import build_sam2

    # q_stride is left at the reference's default (2, 2): a Hydra list would reach MaxPool2d as a ListConfig.
    if config.q_stride != 2:
        raise ValueError("the reference is built with q_stride 2 only")

    torch.manual_seed(seed)
    # apply_postprocessing=False: the dynamic multimask settings come from the overrides instead.
    model = build_sam2(REFERENCE_CONFIG_FILE, device="cpu", apply_postprocessing=False,
                       hydra_overrides_extra=reference_overrides(config))
    randomize_(model)
    return model.eval()


def randomize_(model: torch.nn.Module) -> None:
    """Move every tensor away from its initialisation, so that zero- or one-initialised ones (position
    embeddings, biases, norms) are exercised too; weight matrices keep their random init plus a little."""
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() < 2 or not param.any():
                param.add_(0.1 * torch.randn_like(param))
            else:
                param.add_(0.01 * torch.randn_like(param))


@torch.no_grad()
def reference_image_features(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(image_embed, high_res_feats) as SAM2ImagePredictor.set_image_batch stores them, for any image size."""
    backbone_out = model.forward_image(images)
    _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone_out)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    feats = [feat.permute(1, 2, 0).reshape(images.shape[0], -1, *size) for feat, size in zip(vision_feats, feat_sizes)]
    return feats[-1], feats[:-1]


def save_reference_pt(model: torch.nn.Module, path: Path) -> Path:
    """Write the state dict the way Meta's official SAM 2 checkpoints are written: ``{"model": state_dict}``."""
    torch.save({"model": model.state_dict()}, path)
    return path


@torch.no_grad()
def reference_decode(model: torch.nn.Module, image_embed: torch.Tensor, high_res_feats: list[torch.Tensor],
                     point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                     boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                     multimask_output: bool = True) -> tuple[torch.Tensor, ...]:
    """The reference's prompt encoder and mask decoder fed as SAM2ImagePredictor._predict feeds them (box
    corners as points labelled 2 and 3 ahead of the clicks): (masks, iou, object tokens, object scores)."""
    points = (point_coords, point_labels) if point_coords is not None else None
    if boxes is not None:
        corners = boxes.reshape(-1, 2, 2)
        labels = torch.tensor([[2, 3]], dtype=torch.int).repeat(corners.shape[0], 1)
        points = (corners, labels) if points is None else (
            torch.cat([corners, points[0]], dim=1), torch.cat([labels, points[1]], dim=1))
    sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
    return model.sam_mask_decoder(
        image_embeddings=image_embed, image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask_output,
        repeat_image=sparse.shape[0] > 1, high_res_features=high_res_feats or None)


def make_hf_sam2(config: Sam2Config, seed: int = 0) -> torch.nn.Module:
    """transformers' Sam2Model with the shapes of ``config`` and random, non-degenerate weights (eval mode)."""
    from transformers import Sam2Config as HFSam2Config
    from transformers import Sam2Model

    levels = len(config.stages)
    sizes = [[config.image_size // 4 // 2**level] * 2 for level in range(levels - config.scalp)]
    hf_config = HFSam2Config(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(
                model_type="sam2_hiera_det_model", hidden_size=config.embed_dim, num_attention_heads=config.num_heads,
                blocks_per_stage=list(config.stages), embed_dim_per_stage=list(config.backbone_channel_list[::-1]),
                num_attention_heads_per_stage=[config.num_heads * 2**s for s in range(levels)],
                window_size_per_stage=list(config.window_spec), global_attention_blocks=list(config.global_att_blocks),
                window_positional_embedding_background_size=list(config.window_pos_embed_bkg_spatial_size),
                image_size=[config.image_size] * 2),
            backbone_channel_list=list(config.backbone_channel_list), backbone_feature_sizes=sizes,
            fpn_hidden_size=config.d_model),
        prompt_encoder_config=dict(hidden_size=config.d_model, image_size=config.image_size, patch_size=16),
        mask_decoder_config=dict(hidden_size=config.d_model))
    torch.manual_seed(seed)
    model = Sam2Model(hf_config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "pos_embed" not in name:
                param.normal_(0.0, 0.05)
            else:
                param.add_(0.1 * torch.randn_like(param))
        # Two buffers that transformers ties (save_pretrained writes one): kept equal, as in real checkpoints.
        model.shared_image_embedding.positional_embedding.normal_()
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)
    return model.eval()

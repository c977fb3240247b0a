"""Meta's SAM 3 tracker and transformers' Sam3TrackerModel built with the shapes of a Sam3Config and random
weights, for parity tests.

Meta's builder hard-codes the full size and creates two tensors on ``"cuda"`` (the sine position encodings'
precomputed tables), so the reference is assembled here from its classes, at the config's sizes, with
``precompute_resolution=None``. Its ``sam3.pt`` layout (``detector.*`` and ``tracker.*``) is written by
:func:`save_reference_sam3_pt`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from sam_core.models.sam2.parity import randomize_, randomize_hf_
from sam_core.models.sam3.config import Sam3Config

# A few tensors of the detector's concept parts (text encoder, DETR transformer, segmentation head) as
# sam3.pt names them: the loader must ignore them.
DETECTOR_CONCEPT_SAMPLES = ("detector.backbone.language_backbone.encoder.ln_final.weight",
                            "detector.transformer.decoder.query_embed.weight",
                            "detector.segmentation_head.pixel_decoder.conv_layers.0.weight",
                            "detector.dot_prod_scoring.prompt_proj.weight")


def make_reference_sam3_tracker(config: Sam3Config, seed: int = 0, video: bool = False,
                                object_score_bias: float | None = None) -> torch.nn.Module:
    """Meta's ``Sam3TrackerBase`` (``video``: ``Sam3TrackerPredictor``) with the backbone (ViT, dual neck)
    and memory of ``config``'s shapes and random, non-degenerate weights (eval mode).

    ``object_score_bias``: the object-score head's final bias (with random weights it mostly says "absent",
    and a tracked mask is then empty); None leaves it random.
    """
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from sam3.model.decoder import TransformerDecoderLayerv2, TransformerEncoderCrossAttention
    from sam3.model.memory import CXBlock, SimpleFuser, SimpleMaskDownSampler, SimpleMaskEncoder
    from sam3.model.model_misc import TransformerWrapper
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.sam3_tracker_base import Sam3TrackerBase
    from sam3.model.vitdet import ViT
    from sam3.model.vl_combiner import SAM3VLBackbone
    from sam3.sam.transformer import RoPEAttention

    torch.manual_seed(seed)
    d_model, grid = config.d_model, config.embedding_size
    trunk = ViT(img_size=config.image_size, pretrain_img_size=config.pretrain_image_size,
                patch_size=config.patch_size, embed_dim=config.embed_dim, depth=config.depth,
                num_heads=config.num_heads, mlp_ratio=config.mlp_ratio, norm_layer="LayerNorm", drop_path_rate=0.0,
                qkv_bias=True, use_abs_pos=True, tile_abs_pos=True, global_att_blocks=config.global_att_blocks,
                rel_pos_blocks=(), use_rope=True, use_interp_rope=True, window_size=config.window_size,
                pretrain_use_cls_token=True, retain_cls_token=False, ln_pre=True, ln_post=False,
                return_interm_layers=False, bias_patch_embed=False)
    neck = Sam3DualViTDetNeck(trunk=trunk, position_encoding=PositionEmbeddingSine(d_model, normalize=True),
                              d_model=d_model, scale_factors=[4.0, 2.0, 1.0, 0.5], add_sam2_neck=True)
    backbone = SAM3VLBackbone(visual=neck, text=None, scalp=1)

    def rope_attention(**extra: object) -> torch.nn.Module:
        return RoPEAttention(embedding_dim=d_model, num_heads=config.memory_attention_heads, downsample_rate=1,
                             dropout=0.1, rope_theta=config.rope_theta, feat_sizes=[grid, grid], **extra)

    layer = TransformerDecoderLayerv2(
        cross_attention_first=False, activation="relu", dim_feedforward=config.memory_attention_mlp_dim,
        dropout=0.1, pos_enc_at_attn=False, pre_norm=True, self_attention=rope_attention(), d_model=d_model,
        pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
        cross_attention=rope_attention(kv_in_dim=config.mem_dim, rope_k_repeat=True))
    encoder = TransformerEncoderCrossAttention(
        remove_cross_attention_layers=[], batch_first=True, d_model=d_model, frozen=False, pos_enc_at_input=True,
        layer=layer, num_layers=config.memory_attention_layers)
    transformer = TransformerWrapper(encoder=encoder, decoder=None, d_model=d_model)
    interpolation = 16 * grid  # the mask downsampler's stride
    memory_encoder = SimpleMaskEncoder(
        out_dim=config.mem_dim, in_dim=d_model,
        position_encoding=PositionEmbeddingSine(config.mem_dim, normalize=True),
        mask_downsampler=SimpleMaskDownSampler(embed_dim=d_model, kernel_size=3, stride=2, padding=1,
                                               interpol_size=[interpolation, interpolation]),
        fuser=SimpleFuser(CXBlock(dim=d_model, kernel_size=7, padding=3, layer_scale_init_value=1e-6,
                                  use_dwconv=True), num_layers=2))
    settings = dict(
        image_size=config.image_size, num_maskmem=config.num_maskmem, backbone=backbone,
        backbone_stride=config.patch_size, transformer=transformer, maskmem_backbone=memory_encoder,
        multimask_output_in_sam=config.multimask_output_in_sam,
        multimask_output_for_tracking=config.multimask_output_for_tracking,
        multimask_min_pt_num=config.multimask_min_pt_num, multimask_max_pt_num=config.multimask_max_pt_num,
        non_overlap_masks_for_mem_enc=config.non_overlap_masks_for_mem_enc,
        max_cond_frames_in_attn=config.max_cond_frames_in_attn,
        max_obj_ptrs_in_encoder=config.max_obj_ptrs_in_encoder,
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": config.dynamic_multimask_via_stability,
            "dynamic_multimask_stability_delta": config.dynamic_multimask_stability_delta,
            "dynamic_multimask_stability_thresh": config.dynamic_multimask_stability_thresh})
    if video:
        # Imported here: reference code (test extra), its video predictor only when asked for.
        from sam3.model.sam3_tracking_predictor import Sam3TrackerPredictor

        model = Sam3TrackerPredictor(forward_backbone_per_frame_for_eval=True, trim_past_non_cond_mem_for_eval=False,
                                     always_start_from_first_ann_frame=False, non_overlap_masks_for_output=False,
                                     offload_output_to_cpu_for_eval=False, clear_non_cond_mem_around_input=True,
                                     fill_hole_area=0, use_memory_selection=False, **settings)
    else:
        model = Sam3TrackerBase(**settings)
    randomize_(model)
    if object_score_bias is not None:
        with torch.no_grad():
            model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(object_score_bias)
    return model.eval()


def reference_sam3_pt_state_dict(tracker: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of ``tracker`` (from :func:`make_reference_sam3_tracker`) named as in Meta's ``sam3.pt``:
    the backbone under ``detector.backbone.vision_backbone`` (its detector neck ``convs`` included), the rest
    under ``tracker.``, plus samples of the detector's concept parts (``DETECTOR_CONCEPT_SAMPLES``)."""
    state = {}
    for name, tensor in tracker.state_dict().items():
        if name.startswith("backbone."):
            state["detector." + name] = tensor
        else:
            state["tracker." + name] = tensor
    generator = torch.Generator().manual_seed(1)
    for name in DETECTOR_CONCEPT_SAMPLES:
        state[name] = torch.randn(4, 4, generator=generator)
    return state


def save_reference_sam3_pt(tracker: torch.nn.Module, path: Path) -> Path:
    """Write :func:`reference_sam3_pt_state_dict` the way ``sam3.pt`` is written: ``{"model": state_dict}``."""
    torch.save({"model": reference_sam3_pt_state_dict(tracker)}, path)
    return path


def make_hf_sam3_tracker(config: Sam3Config, seed: int = 0, three_neck_levels: bool = True,
                         layer_norm_eps: float | None = None) -> torch.nn.Module:
    """transformers' Sam3TrackerModel with the shapes of ``config`` and random, non-degenerate weights (eval).

    Two deviations of transformers from Meta's model are worked around by default:

    - ``three_neck_levels``: the vision neck gets scales (4, 2, 1). With transformers' default (4, 2, 1, 0.5),
      as SAM 3's own config has, Sam3TrackerModel adds ``no_memory_embedding`` to the 0.5x level, which it
      then drops, so the embedding never reaches the decoder; Meta's model adds it to the 1x level.
    - ``layer_norm_eps``: the ViT's layer norm epsilon, by default the config's (Meta's 1e-5);
      ``Sam3ViTConfig`` defaults to 1e-6.
    """
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from transformers import Sam3TrackerConfig, Sam3TrackerModel

    hf_config = Sam3TrackerConfig(**hf_config_dict(config, three_neck_levels, layer_norm_eps))
    torch.manual_seed(seed)
    model = Sam3TrackerModel(hf_config)
    randomize_hf_(model, ("position",))
    return model.eval()


def hf_config_dict(config: Sam3Config, three_neck_levels: bool = True,
                   layer_norm_eps: float | None = None) -> dict[str, object]:
    """The ``Sam3TrackerConfig`` arguments of ``config`` (see :func:`make_hf_sam3_tracker`)."""
    grid = config.embedding_size
    backbone = dict(model_type="sam3_vit_model", hidden_size=config.embed_dim,
                    intermediate_size=int(config.embed_dim * config.mlp_ratio), num_hidden_layers=config.depth,
                    num_attention_heads=config.num_heads, image_size=config.image_size,
                    patch_size=config.patch_size, window_size=config.window_size,
                    global_attn_indexes=list(config.global_att_blocks),
                    pretrain_image_size=config.pretrain_image_size,
                    layer_norm_eps=config.layer_norm_eps if layer_norm_eps is None else layer_norm_eps)
    scales = [4.0, 2.0, 1.0] if three_neck_levels else [4.0, 2.0, 1.0, 0.5]
    vision = dict(model_type="sam3_vision_model", backbone_config=backbone, fpn_hidden_size=config.d_model,
                  scale_factors=scales, backbone_feature_sizes=[[4 * grid] * 2, [2 * grid] * 2, [grid] * 2])
    return dict(vision_config=vision,
                prompt_encoder_config=dict(hidden_size=config.d_model, image_size=config.image_size,
                                           patch_size=config.patch_size, mask_input_channels=config.mask_in_chans),
                mask_decoder_config=dict(hidden_size=config.d_model, mlp_dim=config.decoder_mlp_dim,
                                         num_hidden_layers=config.decoder_depth,
                                         num_attention_heads=config.decoder_num_heads,
                                         iou_head_hidden_dim=config.iou_head_hidden_dim))


@torch.no_grad()
def reference_image_features(tracker: torch.nn.Module, images: torch.Tensor,
                             ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(image_embed, high_res_feats) of normalised images as Meta's ``SAM3InteractiveImagePredictor.set_image``
    stores them: the tracker neck's levels, ``no_mem_embed`` added to the last, ``conv_s0``/``conv_s1`` applied."""
    backbone_out = tracker.forward_image(images)
    _, vision_feats, _, sizes = tracker._prepare_backbone_features(backbone_out)
    vision_feats[-1] = vision_feats[-1] + tracker.no_mem_embed
    feats = [feat.permute(1, 2, 0).reshape(images.shape[0], -1, *size) for feat, size in zip(vision_feats, sizes)]
    return feats[-1], feats[:-1]


def make_hf_sam3_tracker_video(config: Sam3Config, seed: int = 0, object_score_bias: float = 20.0) -> torch.nn.Module:
    """transformers' Sam3TrackerVideoModel with the shapes and video settings of ``config`` and random values in
    every tensor (eval mode); the object-score head's final bias is ``object_score_bias`` (the object is present:
    with random weights it mostly says "absent", and every mask is then empty)."""
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from transformers import Sam3TrackerVideoConfig, Sam3TrackerVideoModel

    # The video model reads the first three of four neck levels (and adds no_memory_embedding where Meta does).
    image = hf_config_dict(config, three_neck_levels=False)
    d_model = config.d_model
    hf_config = Sam3TrackerVideoConfig(
        **image, image_size=config.image_size, num_maskmem=config.num_maskmem,
        memory_attention_hidden_size=d_model, memory_attention_num_layers=config.memory_attention_layers,
        memory_attention_num_attention_heads=config.memory_attention_heads,
        memory_attention_feed_forward_hidden_size=config.memory_attention_mlp_dim,
        memory_attention_rope_feat_sizes=[config.embedding_size] * 2, memory_encoder_hidden_size=d_model,
        memory_encoder_output_channels=config.mem_dim, mask_downsampler_embed_dim=d_model,
        memory_fuser_embed_dim=d_model, memory_fuser_intermediate_dim=4 * d_model,
        max_object_pointers_in_encoder=config.max_obj_ptrs_in_encoder,
        max_cond_frame_num=config.max_cond_frames_in_attn)
    torch.manual_seed(seed)
    model = Sam3TrackerVideoModel(hf_config).eval()
    randomize_hf_(model, ("position",))
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(object_score_bias)
    return model


def hf_memory_in_meta_order(model: torch.nn.Module) -> None:
    """Make a Sam3TrackerVideoModel encode memories in Meta's order.

    transformers resizes a frame's mask logits to the memory encoder's 1152 pixels first and then binarises
    (clicked frames) or takes the sigmoid and scales them; Meta (and sam_core) binarise or take the sigmoid and
    scale at the model's 1008 pixels, then resize. The wrapper does Meta's steps and hands transformers logits
    whose sigmoid is exactly that result (logit of the probabilities; +-inf where they are 0 or 1). Undone by
    ``del model._encode_new_memory``."""
    # transformers' private method, wrapped for the parity test (transformers' name, not sam_core's).
    encode = model._encode_new_memory
    scale, bias = model.config.sigmoid_scale_for_mem_enc, model.config.sigmoid_bias_for_mem_enc
    size = 4 * model.prompt_encoder.mask_input_size[0]

    def meta_order(current_vision_feats: torch.Tensor, pred_masks_high_res: torch.Tensor,
                   object_score_logits: torch.Tensor, is_mask_from_pts: bool) -> tuple[torch.Tensor, list]:
        masks = pred_masks_high_res.float()
        masks = (masks > 0).float() if is_mask_from_pts else masks.sigmoid()
        masks = F.interpolate(masks * scale + bias, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        return encode(current_vision_feats, torch.logit((masks - bias) / scale), object_score_logits, False)

    vars(model)["_encode_new_memory"] = meta_order  # an instance attribute over the class's method

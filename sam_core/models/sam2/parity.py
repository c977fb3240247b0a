"""Meta's SAM 2 reference built with the shapes of a Sam2Config and random weights, for parity tests.

Needs the reference package (``SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0``). The
reference is built from its own SAM 2.1 Hydra config with the image-model sizes overridden, so that its
state dict carries every video-only tensor of an official checkpoint too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from sam_core.models.sam2.config import Sam2Config

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
        f"++model.fixed_no_obj_ptr={config.fixed_no_obj_ptr and config.pred_obj_scores}",
        f"++model.use_multimask_token_for_obj_ptr={config.use_multimask_token_for_obj_ptr}",
        f"++model.directly_add_no_mem_embed={config.directly_add_no_mem_embed}",
        f"{extra}dynamic_multimask_via_stability={config.dynamic_multimask_via_stability}",
        f"{extra}dynamic_multimask_stability_delta={config.dynamic_multimask_stability_delta}",
        f"{extra}dynamic_multimask_stability_thresh={config.dynamic_multimask_stability_thresh}",
        *video_overrides(config),
    ]


def video_overrides(config: Sam2Config) -> list[str]:
    """Hydra overrides giving the reference's memory attention, memory encoder and tracking settings the
    values of ``config``."""
    attention, layer = "++model.memory_attention.", "++model.memory_attention.layer."
    encoder = "++model.memory_encoder."
    grid = config.embedding_size
    overrides = [
        f"{attention}d_model={config.d_model}", f"{attention}num_layers={config.memory_attention_layers}",
        f"{layer}d_model={config.d_model}", f"{layer}dim_feedforward={config.memory_attention_mlp_dim}",
        f"{encoder}out_dim={config.mem_dim}", f"{encoder}in_dim={config.d_model}",
        f"{encoder}position_encoding.num_pos_feats={config.mem_dim}",
        f"{encoder}mask_downsampler.embed_dim={config.d_model}", f"{encoder}fuser.layer.dim={config.d_model}",
    ]
    for attn in ("self_attention", "cross_attention"):
        overrides += [f"{layer}{attn}.embedding_dim={config.d_model}",
                      f"{layer}{attn}.num_heads={config.memory_attention_heads}",
                      f"{layer}{attn}.rope_theta={config.rope_theta}", f"{layer}{attn}.feat_sizes=[{grid},{grid}]"]
    overrides.append(f"{layer}cross_attention.kv_in_dim={config.mem_dim}")
    for field in ("num_maskmem", "sigmoid_scale_for_mem_enc", "sigmoid_bias_for_mem_enc",
                  "use_mask_input_as_output_without_sam", "multimask_output_in_sam", "multimask_output_for_tracking",
                  "multimask_min_pt_num", "multimask_max_pt_num", "use_obj_ptrs_in_encoder",
                  "max_obj_ptrs_in_encoder", "use_mlp_for_obj_ptr_proj", "only_obj_ptrs_in_the_past_for_eval",
                  "soft_no_obj_ptr", "no_obj_embed_spatial", "add_tpos_enc_to_obj_ptrs", "proj_tpos_enc_in_obj_ptrs",
                  "use_signed_tpos_enc_to_obj_ptrs", "memory_temporal_stride_for_eval", "max_cond_frames_in_attn",
                  "non_overlap_masks_for_mem_enc"):
        overrides.append(f"++model.{field}={getattr(config, field)}")
    return overrides


def make_reference_sam2(config: Sam2Config, seed: int = 0) -> torch.nn.Module:
    """Meta's SAM2Base with the image-model shapes of ``config`` and random, non-degenerate weights (eval).

    The decoder sizes the reference hard-codes (mask_in_chans 16, depth 2, 8 heads, MLP 2048, IoU head
    3 x 256, 3 multimask outputs) must be the config's.
    """
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
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


def make_reference_video_predictor(config: Sam2Config, seed: int = 0,
                                   object_score_bias: float | None = 20.0) -> torch.nn.Module:
    """Meta's SAM2VideoPredictor with the shapes and video settings of ``config``, the post-processing of
    its ``build_sam2_video_predictor`` (binarised clicked masks in memory, holes of up to 8 pixels filled)
    and random, non-degenerate weights (eval mode).

    With random weights the object-score head mostly says "absent", and then every mask is empty: its final
    bias is set to ``object_score_bias`` (None: left random) so that the object is present.
    """
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from sam2.build_sam import build_sam2

    torch.manual_seed(seed)
    overrides = ["++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
                 "++model.binarize_mask_from_pts_for_mem_enc=true", "++model.fill_hole_area=8",
                 *reference_overrides(config)]
    model = build_sam2(REFERENCE_CONFIG_FILE, device="cpu", apply_postprocessing=False,
                       hydra_overrides_extra=overrides)
    randomize_(model)
    if object_score_bias is not None:
        head = model.sam_mask_decoder.pred_obj_score_head
        final = head.layers[-1] if hasattr(head, "layers") else head
        with torch.no_grad():
            final.bias.fill_(object_score_bias)
    return model.eval()


@contextmanager
def reference_video_on_cpu(predictor: torch.nn.Module) -> Iterator[None]:
    """Two patches that let Meta's video predictor compute on a CPU what it computes on a GPU:

    - Its hole filling needs its CUDA extension (and is skipped without it): connected components are
      given by scipy instead (8-connectivity, the extension's).
    - An object with memories but no object pointer yet (prompted on a later frame) makes its memory
      attention fail on a dtype mismatch: the bfloat16 memories are then not promoted to float32 by
      concatenation with the pointers. The memory is cast to float32, which is what concatenation does
      whenever there is a pointer.
    """
    # Imported here: reference code's dependency (test extra).
    import sam2.utils.misc as misc
    from scipy import ndimage

    def connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = np.zeros(mask.shape, dtype=np.int32)
        counts = np.zeros(mask.shape, dtype=np.int32)
        for index, plane in enumerate(mask.to(torch.bool).cpu().numpy()[:, 0]):
            labelled, _ = ndimage.label(plane, structure=np.ones((3, 3)))
            sizes = np.bincount(labelled.ravel())
            labels[index, 0] = labelled
            counts[index, 0] = np.where(labelled > 0, sizes[labelled], 0)
        return torch.from_numpy(labels), torch.from_numpy(counts)

    attention = predictor.memory_attention
    forward = attention.forward

    def float32_memory(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):  # noqa: ANN001, ANN202
        return forward(curr=curr, memory=memory.float(), curr_pos=curr_pos, memory_pos=memory_pos,
                       num_obj_ptr_tokens=num_obj_ptr_tokens)

    original_components = misc.get_connected_components
    misc.get_connected_components = connected_components
    attention.forward = float32_memory
    try:
        yield
    finally:
        misc.get_connected_components = original_components
        del attention.forward


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
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
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


def with_previous_mask_input(model: torch.nn.Module) -> Callable[..., dict]:
    """transformers' video model's ``_run_single_frame_inference`` that, as Meta's predictor does, gives a clicked
    frame's earlier mask logits (clamped to +-32) to the decoder as its mask input (transformers' session never
    passes them). Set it on the instance; ``del model._run_single_frame_inference`` restores the class's."""
    run_single_frame = model._run_single_frame_inference

    def run(**kwargs) -> dict:
        outputs = kwargs["inference_session"].output_dict_per_obj[kwargs["obj_idx"]]
        previous = (outputs["cond_frame_outputs"].get(kwargs["frame_idx"])
                    or outputs["non_cond_frame_outputs"].get(kwargs["frame_idx"]))
        if kwargs.get("point_inputs") is not None and kwargs.get("mask_inputs") is None and previous is not None:
            kwargs["prev_sam_mask_logits"] = previous["pred_masks"].clamp(-32.0, 32.0)
        return run_single_frame(**kwargs)
    return run

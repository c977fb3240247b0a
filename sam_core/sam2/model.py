"""Sam2: SAM 2's image model (image encoder, prompt encoder, mask decoder) and its builder.

Module and parameter names are Meta's (``image_encoder.trunk...``, ``sam_prompt_encoder...``,
``sam_mask_decoder...``, ``no_mem_embed``), so the image part of an official checkpoint loads as it is.
"""

from __future__ import annotations

import torch
from torch import nn

from sam_core.modeling.sam import PIXEL_MEAN, PIXEL_STD
from sam_core.sam2.config import Sam2Config, get_sam2_config
from sam_core.sam2.hiera import Hiera
from sam_core.sam2.image_encoder import ImageEncoder
from sam_core.sam2.mask_decoder import Sam2MaskDecoder
from sam_core.sam2.neck import FpnNeck
from sam_core.sam2.prompt_encoder import Sam2PromptEncoder
from sam_core.sam2.transformer import Sam2TwoWayTransformer

# Box corners enter SAM 2's prompt encoder as points with these labels, ahead of the clicks.
BOX_CORNER_LABELS = (2, 3)


class Sam2(nn.Module):
    """SAM 2 for images: embed an image once, then decode masks for any number of prompts.

    Args:
        image_encoder: Hiera trunk + FPN neck.
        sam_prompt_encoder: Points, boxes (as labelled corners) and masks -> embeddings.
        sam_mask_decoder: Embeddings -> masks, IoU and object scores; owns ``conv_s0``/``conv_s1``.
        config: The config the modules were built from, if any.
    """

    mask_threshold: float = 0.0

    def __init__(self, image_encoder: ImageEncoder, sam_prompt_encoder: Sam2PromptEncoder,
                 sam_mask_decoder: Sam2MaskDecoder, config: Sam2Config | None = None) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.config = config
        hidden_dim = image_encoder.neck.d_model
        # Learned "no memory" embedding; SAM 2 adds it to a lone image's features in place of memory.
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.directly_add_no_mem_embed = config.directly_add_no_mem_embed if config else True
        # SAM 2 normalises with ImageNet statistics, SAM's values; not persistent (checkpoints lack them).
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.no_mem_embed.dtype

    @property
    def image_size(self) -> int:
        return self.sam_prompt_encoder.input_image_size[0]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise (B, 3, S, S) or (3, S, S) 0-255 images, already resized to ``image_size`` square.

        SAM 2 stretches the whole image to the square input (no aspect-preserving padding as in SAM).
        """
        return ((images - self.pixel_mean) / self.pixel_std).to(self.dtype)

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 3, S, S) normalised images -> (image_embed (B, C, S/16, S/16), high_res_feats).

        ``image_embed`` has ``no_mem_embed`` added, as SAM2ImagePredictor's ``_features["image_embed"]``;
        ``high_res_feats`` are [(B, C/8, S/4, S/4), (B, C/4, S/8, S/8)] through the decoder's ``conv_s0``
        and ``conv_s1``, or [] when the decoder does not use them.
        """
        features = self.image_encoder(images)
        image_embed = features[-1]
        if self.directly_add_no_mem_embed:
            image_embed = image_embed + self.no_mem_embed.view(1, -1, 1, 1)
        decoder = self.sam_mask_decoder
        if not decoder.use_high_res_features:
            return image_embed, []
        return image_embed, [decoder.conv_s0(features[0]), decoder.conv_s1(features[1])]

    def embed_prompts(self, point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                      boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse (B, N, C) and dense (B, C, S/16, S/16) prompt embeddings, as SAM2ImagePredictor makes them.

        Coordinates are pixels of the ``image_size`` input. ``point_coords`` (B, N, 2) with ``point_labels``
        (B, N); ``boxes`` (B, 4) as x0, y0, x1, y1, entered as two labelled corner points ahead of the
        clicks; ``mask_input`` (B, 1, S/4, S/4) low-res logits from an earlier prediction.
        """
        points = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must accompany point_coords")
            points = (point_coords, point_labels)
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([BOX_CORNER_LABELS], device=boxes.device).expand(corners.shape[0], -1)
            if points is not None:
                corners = torch.cat([corners, points[0].to(corners.dtype)], dim=1)
                corner_labels = torch.cat([corner_labels, points[1].to(corner_labels.dtype)], dim=1)
            points = (corners, corner_labels)
        return self.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)

    def predict_masks(self, image_embed: torch.Tensor, high_res_feats: list[torch.Tensor],
                      point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                      boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                      multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Low-res mask logits (B, M, S/4, S/4), IoU predictions (B, M) and object score logits (B, 1) for
        B prompt sets on one encoded image (``encode_image`` output of batch 1; see ``embed_prompts`` for
        the prompts). M = num_multimask_outputs with ``multimask_output``, else 1 (dynamically the best
        multimask output when the single one is unstable, if the config asks for it)."""
        sparse, dense = self.embed_prompts(point_coords, point_labels, boxes, mask_input)
        masks, iou_pred, _, object_score_logits = self.sam_mask_decoder(
            image_embed, self.sam_prompt_encoder.get_dense_pe(), sparse, dense, multimask_output,
            high_res_feats or None)
        return masks, iou_pred, object_score_logits


def build_sam2(name_or_config: str | Sam2Config = "sam2.1_hiera_tiny") -> Sam2:
    """A randomly initialised Sam2 of the given registry name or config (eval mode)."""
    config = get_sam2_config(name_or_config)
    trunk = Hiera(embed_dim=config.embed_dim, num_heads=config.num_heads, stages=config.stages,
                  q_pool=config.q_pool, q_stride=config.q_stride, window_spec=config.window_spec,
                  global_att_blocks=config.global_att_blocks,
                  window_pos_embed_bkg_spatial_size=config.window_pos_embed_bkg_spatial_size,
                  mlp_ratio=config.mlp_ratio)
    neck = FpnNeck(d_model=config.d_model, backbone_channel_list=config.backbone_channel_list,
                   fpn_top_down_levels=config.fpn_top_down_levels, fpn_interp_mode=config.fpn_interp_mode)
    grid = config.embedding_size
    prompt_encoder = Sam2PromptEncoder(embed_dim=config.d_model, image_embedding_size=(grid, grid),
                                       input_image_size=(config.image_size, config.image_size),
                                       mask_in_chans=config.mask_in_chans)
    transformer = Sam2TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.d_model,
                                        num_heads=config.decoder_num_heads, mlp_dim=config.decoder_mlp_dim)
    mask_decoder = Sam2MaskDecoder(
        transformer_dim=config.d_model, transformer=transformer, num_multimask_outputs=config.num_multimask_outputs,
        iou_head_depth=config.iou_head_depth, iou_head_hidden_dim=config.iou_head_hidden_dim,
        use_high_res_features=config.use_high_res_features,
        iou_prediction_use_sigmoid=config.iou_prediction_use_sigmoid, pred_obj_scores=config.pred_obj_scores,
        pred_obj_scores_mlp=config.pred_obj_scores_mlp,
        use_multimask_token_for_obj_ptr=config.use_multimask_token_for_obj_ptr,
        dynamic_multimask_via_stability=config.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=config.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=config.dynamic_multimask_stability_thresh,
    )
    image_encoder = ImageEncoder(trunk, neck, scalp=config.scalp)
    return Sam2(image_encoder, prompt_encoder, mask_decoder, config).eval()

"""Sam2: SAM 2's image model (image encoder, prompt encoder, mask decoder) behind the model interface, and
its builder.

Module and parameter names are Meta's (``image_encoder.trunk...``, ``sam_prompt_encoder...``,
``sam_mask_decoder...``, ``no_mem_embed``), so the image part of an official checkpoint loads as it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from sam_core.interface import GeneratorDefaults, ImageFeatures, PreparedImage, Prompts
from sam_core.models.base import NormalizingSegmenter
from sam_core.models.sam.model import build_mask_decoder, build_prompt_encoder
from sam_core.models.sam.transformer import ImageTokens
from sam_core.models.sam2.config import Sam2Config, get_sam2_config
from sam_core.models.sam2.hiera import Hiera
from sam_core.models.sam2.image_encoder import ImageEncoder
from sam_core.models.sam2.mask_decoder import Sam2DecodedTokens, Sam2ImageTokens, Sam2MaskDecoder, stability_scores
from sam_core.models.sam2.neck import FpnNeck
from sam_core.models.sam2.prompt_encoder import Sam2PromptEncoder
from sam_core.models.sam2.transformer import Sam2TwoWayTransformer
from sam_core.transforms import StretchToSquare

# Box corners enter SAM 2's prompt encoder as points with these labels, ahead of the clicks.
BOX_CORNER_LABELS = (2, 3)
# SAM 2 normalises the [0, 1] image (ToTensor) with ImageNet statistics.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
EMBEDDING_KEY = "image_embed"
HIGH_RES_KEYS = ("high_res_feats_0", "high_res_feats_1")  # strides 4 and 8, through conv_s0 / conv_s1
# Sam2Config's fields that Sam2MaskDecoder takes beyond SAM's decoder's, under the same names.
DECODER_SETTINGS = ("use_high_res_features", "iou_prediction_use_sigmoid", "pred_obj_scores", "pred_obj_scores_mlp",
                    "use_multimask_token_for_obj_ptr", "dynamic_multimask_via_stability",
                    "dynamic_multimask_stability_delta", "dynamic_multimask_stability_thresh")
# SAM2ImagePredictor clamps the low-res logits it returns (the masks come from the unclamped ones).
LOW_RES_LOGIT_LIMIT = 32.0


@dataclass
class Sam2PreparedImage(PreparedImage):
    """One image for the SAM 2 decoder: its features, the grid's positional encoding, and the decoder input
    for prompts without a mask input (shared by all of them; it holds the high-res skip features in the
    decoder's block layout, which prompts with a mask input reuse)."""

    dense_pe: torch.Tensor  # (1, C, H, W)
    no_mask_input: Sam2ImageTokens


@dataclass
class Sam2ScoredPrompts:
    """Transformer outputs of B prompt sets and the mask token each output comes from.

    ``outputs`` selects the same tokens for every set (multimask: 1:, single mask without the dynamic
    choice: 0:1). With the dynamic choice, ``chosen`` is each set's token (0 where the single-mask output
    is stable, else its best multimask token) and ``single_masks`` the token-0 logits already drawn to
    measure that stability.
    """

    decoded: Sam2DecodedTokens
    iou_predictions: torch.Tensor  # (B, M)
    outputs: slice | None = None
    chosen: torch.Tensor | None = None  # (B,)
    single_masks: torch.Tensor | None = None  # (B, 1, S, S)

    @property
    def extras(self) -> dict[str, torch.Tensor]:
        return {"object_score_logits": self.decoded.object_score_logits}

    def take(self, index: torch.Tensor) -> Sam2ScoredPrompts:
        def rows(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value[index]

        return Sam2ScoredPrompts(self.decoded.take(index), self.iou_predictions[index], self.outputs,
                                 rows(self.chosen), rows(self.single_masks))


class Sam2(NormalizingSegmenter):
    """SAM 2 for images: embed an image once, then decode masks for any number of prompts.

    Args:
        image_encoder: Hiera trunk + FPN neck.
        sam_prompt_encoder: Points, boxes (as labelled corners) and masks -> embeddings.
        sam_mask_decoder: Embeddings -> masks, IoU and object scores; owns ``conv_s0``/``conv_s1``.
        config: The config the modules were built from, if any.
    """

    family = "sam2"
    embedding_key = EMBEDDING_KEY
    # Meta's SAM2AutomaticMaskGenerator defaults (tuned for Hiera-L).
    generator_defaults = GeneratorDefaults(pred_iou_thresh=0.8, stability_score_thresh=0.95, box_nms_thresh=0.7,
                                           small_region_cleanup="low_res")
    low_res_logit_limit = LOW_RES_LOGIT_LIMIT
    mask_threshold: float = 0.0
    image_format: str = "RGB"
    # encode() adds no_mem_embed and runs the decoder's conv_s0 / conv_s1 on the high-res features: they are
    # part of the image encoding, and stay frozen with it.
    parameter_roles = {"image_encoder": ("image_encoder.", "no_mem_embed", "sam_mask_decoder.conv_s0.",
                                         "sam_mask_decoder.conv_s1."),
                       "prompt_encoder": ("sam_prompt_encoder.",), "mask_decoder": ("sam_mask_decoder.",)}
    # Per-channel statistics of the [0, 1] image that preprocess normalises with (a subclass's own: SAM 3's).
    input_statistics: tuple[tuple[float, ...], tuple[float, ...]] = (PIXEL_MEAN, PIXEL_STD)

    def __init__(self, image_encoder: ImageEncoder, sam_prompt_encoder: Sam2PromptEncoder,
                 sam_mask_decoder: Sam2MaskDecoder, config: Sam2Config | None = None) -> None:
        super().__init__(*self.input_statistics)
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.config = config
        hidden_dim = image_encoder.neck.d_model
        # Learned "no memory" embedding; SAM 2 adds it to a lone image's features in place of memory.
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.directly_add_no_mem_embed = config.directly_add_no_mem_embed if config else True
        self.transform = StretchToSquare(sam_prompt_encoder.input_image_size[0])

    @property
    def mask_input_size(self) -> int:
        return self.sam_prompt_encoder.mask_input_size[0]

    @property
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        channels = self.sam_prompt_encoder.embed_dim
        grid = self.sam_prompt_encoder.image_embedding_size[0]
        shapes = {EMBEDDING_KEY: (channels, grid, grid)}
        if self.sam_mask_decoder.use_high_res_features:
            shapes[HIGH_RES_KEYS[0]] = (channels // 8, 4 * grid, 4 * grid)
            shapes[HIGH_RES_KEYS[1]] = (channels // 4, 2 * grid, 2 * grid)
        return shapes

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) or (3, h, w) 0-255 images of any size -> the (B, 3, S, S) model input, as Meta's
        SAM2Transforms computes it: divided by 255, stretched to the square (``StretchToSquare.resize_torch``),
        normalised with ``input_statistics`` (ImageNet's)."""
        batched = images.dim() == 4
        # Contiguous first: a permuted HxWxC image would otherwise stay channels-last through the resize.
        x = (images if batched else images[None]).contiguous().to(torch.float32) / 255
        x = (self.transform.resize_torch(x) - self.pixel_mean) / self.pixel_std
        return (x if batched else x[0]).to(self.dtype)

    def encode(self, images: torch.Tensor) -> ImageFeatures:
        """Preprocessed images -> ``image_embed`` (with ``no_mem_embed`` added) and the two high-res feature
        maps through ``conv_s0`` / ``conv_s1``, as SAM2ImagePredictor's ``_features`` holds them."""
        image_embed, high_res = self.encode_image(images)
        return {EMBEDDING_KEY: image_embed, **dict(zip(HIGH_RES_KEYS, high_res))}

    def prepare_image(self, features: ImageFeatures) -> Sam2PreparedImage:
        high_res = [features[key] for key in HIGH_RES_KEYS if key in features] or None
        dense_pe = self.sam_prompt_encoder.get_dense_pe()
        _, no_mask = self.sam_prompt_encoder(points=None, boxes=None, masks=None)
        no_mask_input = self.sam_mask_decoder.prepare_image(features[EMBEDDING_KEY], dense_pe, no_mask, high_res)
        return Sam2PreparedImage(features, dense_pe, no_mask_input)

    def score_prompts(self, image: Sam2PreparedImage, prompts: Prompts,
                      multimask_output: bool) -> Sam2ScoredPrompts:
        """The transformer and heads for B prompt sets. When one mask is asked for and the config enables
        the dynamic choice (Meta's default), the single-mask output is drawn here already: whether it or
        the best multimask output is returned depends on its stability."""
        decoder = self.sam_mask_decoder
        sparse, dense = self.embed_prompts(prompts.point_coords, prompts.point_labels, prompts.boxes,
                                           prompts.mask_input)
        if prompts.mask_input is None:
            decoder_input = image.no_mask_input
        else:
            tokens = ImageTokens.from_maps(image.features[EMBEDDING_KEY] + dense, image.dense_pe)
            fields = {field.name: getattr(tokens, field.name) for field in dataclasses.fields(tokens)}
            decoder_input = Sam2ImageTokens(**fields, high_res=image.no_mask_input.high_res)
        decoded = decoder.decode_tokens(decoder_input, sparse)
        if multimask_output:
            return Sam2ScoredPrompts(decoded, decoded.iou_pred[:, 1:], outputs=slice(1, None))
        if not (decoder.dynamic_multimask_via_stability and not self.training):
            return Sam2ScoredPrompts(decoded, decoded.iou_pred[:, :1], outputs=slice(0, 1))
        single = decoder.masks_from_tokens(decoded, slice(0, 1))
        stable = stability_scores(single[:, 0], decoder.dynamic_multimask_stability_delta)
        stable = stable >= decoder.dynamic_multimask_stability_thresh
        best = decoded.iou_pred[:, 1:].argmax(dim=-1) + 1
        chosen = torch.where(stable, torch.zeros_like(best), best)
        return Sam2ScoredPrompts(decoded, decoded.iou_pred.gather(1, chosen[:, None]), chosen=chosen,
                                 single_masks=single)

    def draw_masks(self, scored: Sam2ScoredPrompts) -> torch.Tensor:
        decoder = self.sam_mask_decoder
        if scored.chosen is None:
            return decoder.masks_from_tokens(scored.decoded, scored.outputs)
        masks = scored.single_masks
        unstable = (scored.chosen != 0).nonzero().squeeze(1)
        if len(unstable):
            multimask = decoder.masks_from_tokens(scored.decoded.take(unstable), slice(1, None))
            rows = torch.arange(len(unstable), device=multimask.device)
            masks = masks.clone()
            masks[unstable] = multimask[rows, scored.chosen[unstable] - 1].unsqueeze(1)
        return masks

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


def build_sam2_model(name_or_config: str | Sam2Config = "sam2.1_hiera_tiny") -> Sam2:
    """A SAM 2 image model from its config (``sam_core.compat.build_sam2`` is Meta's builder from a config file
    and a checkpoint).

    Args:
        name_or_config: a registry name of ``SAM2_CONFIGS`` ("sam2.1_hiera_tiny"...) or a Sam2Config.

    Returns:
        The Sam2, randomly initialised, in eval mode.
    """
    config = get_sam2_config(name_or_config)
    trunk = Hiera(embed_dim=config.embed_dim, num_heads=config.num_heads, stages=config.stages,
                  q_pool=config.q_pool, q_stride=config.q_stride, window_spec=config.window_spec,
                  global_att_blocks=config.global_att_blocks,
                  window_pos_embed_bkg_spatial_size=config.window_pos_embed_bkg_spatial_size,
                  mlp_ratio=config.mlp_ratio)
    return assemble_sam2(config, trunk)


def assemble_sam2(config: Sam2Config, trunk: nn.Module, model_type: type[Sam2] = Sam2) -> Sam2:
    """SAM 2's FPN neck, prompt encoder and mask decoder around ``trunk`` (a module with a ``channel_list``,
    lowest resolution first, returning its stage outputs highest resolution first), as ``model_type``, in eval
    mode. EdgeTAM builds its RepViT trunk's model with it."""
    neck = FpnNeck(d_model=config.d_model, backbone_channel_list=config.backbone_channel_list,
                   fpn_top_down_levels=config.fpn_top_down_levels, fpn_interp_mode=config.fpn_interp_mode)
    prompt_encoder = build_prompt_encoder(config, Sam2PromptEncoder, width=config.d_model)
    mask_decoder = build_mask_decoder(config, Sam2MaskDecoder, Sam2TwoWayTransformer, width=config.d_model,
                                      **{name: getattr(config, name) for name in DECODER_SETTINGS})
    image_encoder = ImageEncoder(trunk, neck, scalp=config.scalp)
    return model_type(image_encoder, prompt_encoder, mask_decoder, config).eval()

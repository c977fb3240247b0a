"""Sam: the image encoder, prompt encoder and mask decoder wired together behind the model interface, and
the SAM family's entry in the registry."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sam_core.interface import (
    GeneratorDefaults,
    ImageFeatures,
    ModelFamily,
    OfficialCheckpoint,
    PreparedImage,
    PromptableSegmenter,
    Prompts,
)
from sam_core.models.sam.config import SAM_CONFIGS, SamConfig, get_config, infer_sam_config
from sam_core.models.sam.hf_format import hf_to_meta_state_dict, sam_config_from_hf
from sam_core.models.sam.image_encoder import ImageEncoderViT
from sam_core.models.sam.mask_decoder import DecodedTokens, MaskDecoder
from sam_core.models.sam.prompt_encoder import PromptEncoder
from sam_core.models.sam.transformer import ImageTokens, TwoWayTransformer
from sam_core.transforms import ResizeLongestSide

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
EMBEDDING_KEY = "image_embeddings"
# SAM-HQ's output token, in its official files and in Hugging Face's: a SAM checkpoint with it is SAM-HQ's.
HQ_TOKEN_NAMES = ("mask_decoder.hf_token.weight", "mask_decoder.hq_token.weight")


@dataclass
class SamPreparedImage(PreparedImage):
    """One image for the SAM decoder: its embedding, the grid's positional encoding, and the decoder's input
    for prompts without a mask input (tokens with the "no mask" embedding added and the first layer's
    image-side projections), which every such prompt on the image shares."""

    dense_pe: torch.Tensor  # (1, C, H, W)
    no_mask_input: ImageTokens


@dataclass
class SamScoredPrompts:
    """Transformer outputs of B prompt sets and which mask tokens the caller asked for."""

    decoded: DecodedTokens
    outputs: slice  # token 0 is the single-mask output, 1: the multimask ones

    @property
    def iou_predictions(self) -> torch.Tensor:
        return self.decoded.iou_pred[:, self.outputs]

    def take(self, index: torch.Tensor) -> SamScoredPrompts:
        return SamScoredPrompts(self.decoded.take(index), self.outputs)


class Sam(PromptableSegmenter):
    """Segment Anything: embed an image once, then decode masks for any number of prompts."""

    family = "sam"
    embedding_key = EMBEDDING_KEY
    generator_defaults = GeneratorDefaults(pred_iou_thresh=0.88, stability_score_thresh=0.95)
    mask_threshold: float = 0.0
    image_format: str = "RGB"
    parameter_roles = {"image_encoder": ("image_encoder.",), "prompt_encoder": ("prompt_encoder.",),
                       "mask_decoder": ("mask_decoder.",)}

    def __init__(self, image_encoder: ImageEncoderViT, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 config: SamConfig | None = None) -> None:
        """
        Args:
            image_encoder: ViT backbone and neck, image -> (B, C, H, W) embedding.
            prompt_encoder: points, boxes and mask inputs -> sparse tokens and a dense map.
            mask_decoder: two-way transformer and heads -> low-res mask logits and IoU predictions.
            config: the shapes the modules were built with (``build_sam`` sets it; checkpoints store it).
        """
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config
        self.transform = ResizeLongestSide(image_encoder.img_size)
        # Not persistent: the official checkpoints do not store them.
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pixel_mean.dtype

    @property
    def mask_input_size(self) -> int:
        return self.prompt_encoder.mask_input_size[0]

    @property
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        return {EMBEDDING_KEY: (self.prompt_encoder.embed_dim, *self.prompt_encoder.image_embedding_size)}

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a (B, 3, H, W) or (3, H, W) 0-255 image and zero-pad it to the square input size."""
        x = (x - self.pixel_mean) / self.pixel_std
        size = self.image_encoder.img_size
        return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2])).to(self.dtype)

    def encode(self, images: torch.Tensor) -> ImageFeatures:
        return {EMBEDDING_KEY: self.image_encoder(images)}

    def prepare_image(self, features: ImageFeatures) -> SamPreparedImage:
        dense_pe = self.prompt_encoder.get_dense_pe()
        _, no_mask = self.prompt_encoder(points=None, boxes=None, masks=None)
        no_mask_input = self.mask_decoder.prepare_image(features[EMBEDDING_KEY], dense_pe, no_mask)
        return SamPreparedImage(features, dense_pe, no_mask_input)

    def score_prompts(self, image: SamPreparedImage, prompts: Prompts, multimask_output: bool) -> SamScoredPrompts:
        points = None if prompts.point_coords is None else (prompts.point_coords, prompts.point_labels)
        sparse, dense = self.prompt_encoder(points=points, boxes=prompts.boxes, masks=prompts.mask_input)
        if prompts.mask_input is None:
            decoder_input = image.no_mask_input
        else:
            decoder_input = ImageTokens.from_maps(image.features[EMBEDDING_KEY] + dense, image.dense_pe)
        decoded = self.mask_decoder.decode_tokens(decoder_input, sparse)
        return SamScoredPrompts(decoded, slice(1, None) if multimask_output else slice(0, 1))

    def draw_masks(self, scored: SamScoredPrompts) -> torch.Tensor:
        return self.mask_decoder.masks_from_tokens(scored.decoded, scored.outputs)

    def draw_mask_corners(self, scored: SamScoredPrompts, extent: tuple[int, int]) -> torch.Tensor:
        return self.mask_decoder.masks_from_tokens(scored.decoded, scored.outputs, extent)

    @torch.no_grad()
    def forward(self, batched_input: list[dict[str, Any]], multimask_output: bool) -> list[dict[str, torch.Tensor]]:
        """Reference-compatible batch API.

        Each input dict holds ``image`` (3xHxW, already resized so the long side is ``img_size``),
        ``original_size`` (H, W) and optionally ``point_coords`` (BxNx2) with ``point_labels`` (BxN),
        ``boxes`` (Bx4) and ``mask_inputs`` (Bx1xSxS), all in the resized frame. Each output dict holds
        ``masks`` (bool, BxMxHxW at the original size), ``iou_predictions`` (BxM) and ``low_res_logits``.
        """
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
        embeddings = self.image_encoder(images)
        dense_pe = self.prompt_encoder.get_dense_pe()
        outputs = []
        for record, embedding in zip(batched_input, embeddings):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            sparse, dense = self.prompt_encoder(points=points, boxes=record.get("boxes"),
                                                masks=record.get("mask_inputs"))
            low_res, iou = self.mask_decoder(embedding.unsqueeze(0), dense_pe, sparse, dense, multimask_output)
            masks = self.postprocess_masks(low_res, tuple(record["image"].shape[-2:]), record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": iou,
                            "low_res_logits": low_res})
        return outputs


def build_sam(name_or_config: str | SamConfig = "vit_h") -> Sam:
    """A randomly initialised Sam of the given registry name or config (eval mode)."""
    config = get_config(name_or_config)
    image_encoder = ImageEncoderViT(
        img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.encoder_embed_dim,
        depth=config.encoder_depth, num_heads=config.encoder_num_heads,
        global_attn_indexes=config.encoder_global_attn_indexes, window_size=config.window_size,
        mlp_ratio=config.encoder_mlp_ratio, out_chans=config.prompt_embed_dim,
    )
    return Sam(image_encoder, build_prompt_encoder(config), build_mask_decoder(config), config).eval()


def build_prompt_encoder(config: Any) -> PromptEncoder:
    """SAM's prompt encoder for a config with SamConfig's prompt fields (``image_size``, ``embedding_size``,
    ``prompt_embed_dim``, ``mask_in_chans``): shared by the families with SAM's decoder."""
    grid = config.embedding_size
    return PromptEncoder(embed_dim=config.prompt_embed_dim, image_embedding_size=(grid, grid),
                         input_image_size=(config.image_size, config.image_size), mask_in_chans=config.mask_in_chans)


def build_mask_decoder(config: Any, decoder_type: type[MaskDecoder] = MaskDecoder, **extra: Any) -> MaskDecoder:
    """SAM's mask decoder (or a subclass taking ``extra`` arguments) for a config with SamConfig's decoder
    fields."""
    transformer = TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_embed_dim,
                                    num_heads=config.decoder_num_heads, mlp_dim=config.decoder_mlp_dim)
    return decoder_type(transformer_dim=config.prompt_embed_dim, transformer=transformer,
                        num_multimask_outputs=config.num_multimask_outputs, iou_head_depth=config.iou_head_depth,
                        iou_head_hidden_dim=config.iou_head_hidden_dim, **extra)


def _is_sam_checkpoint(names: Collection[str]) -> bool:
    """Meta's names or Hugging Face SamModel's (a ViT with a plain patch embedding), without SAM-HQ's token."""
    return (any(name.startswith(("image_encoder.patch_embed.proj.", "vision_encoder.patch_embed.")) for name in names)
            and not any(name in HQ_TOKEN_NAMES for name in names))


def _sam_native_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if any(name.startswith("vision_encoder.") for name in tensors):
        return hf_to_meta_state_dict(tensors)
    return dict(tensors)


_SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

SAM_FAMILY = ModelFamily(
    name="sam",
    config_type=SamConfig,
    configs=SAM_CONFIGS,
    build=build_sam,
    owns_checkpoint=_is_sam_checkpoint,
    to_native_names=_sam_native_names,
    infer_config=infer_sam_config,
    config_from_hf=sam_config_from_hf,
    to_meta_file=dict,  # segment_anything's .pth files are the plain state dict, under these names
    official_checkpoints={
        "vit_h": OfficialCheckpoint("sam_vit_h_4b8939.pth",
                                    "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2564550879,
                                    _SAM_BASE_URL),
        "vit_l": OfficialCheckpoint("sam_vit_l_0b3195.pth",
                                    "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1249524607,
                                    _SAM_BASE_URL),
        "vit_b": OfficialCheckpoint("sam_vit_b_01ec64.pth",
                                    "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375042383,
                                    _SAM_BASE_URL),
    },
)

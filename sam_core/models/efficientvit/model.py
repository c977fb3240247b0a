"""EfficientViTSam: the EfficientViT image encoder with SAM 1's prompt encoder and mask decoder, behind the model
interface, and its builder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.interface import PromptableSegmenter
from sam_core.models.efficientvit.config import EfficientViTSamConfig, get_efficientvit_sam_config
from sam_core.models.efficientvit.image_encoder import EfficientViTSamImageEncoder
from sam_core.models.efficientvit.transform import EncoderResizeLongestSide
from sam_core.models.sam.mask_decoder import MaskDecoder
from sam_core.models.sam.model import PIXEL_MEAN, PIXEL_STD, Sam
from sam_core.models.sam.prompt_encoder import PromptEncoder
from sam_core.models.sam.transformer import TwoWayTransformer

# The reference normalises the 0-1 image with SAM's statistics divided by 255 (rounded once, to float32).
_MEAN_01 = [value / 255 for value in PIXEL_MEAN]
_STD_01 = [value / 255 for value in PIXEL_STD]


class EfficientViTSam(Sam):
    """EfficientViT-SAM: SAM with an EfficientViT image encoder. Prompts, the decoder and the masks are SAM's,
    in the 1024 frame; the encoder sees the image resized to ``config.encoder_image_size`` (512 for the L
    models), normalised as the reference does (the 0-1 image less mean / 255, over std / 255) and zero-padded."""

    family = "efficientvit_sam"

    def __init__(self, image_encoder: EfficientViTSamImageEncoder, prompt_encoder: PromptEncoder,
                 mask_decoder: MaskDecoder, config: EfficientViTSamConfig | None = None) -> None:
        """
        Args:
            image_encoder: EfficientViT backbone, neck and norm, image -> (B, C, 64, 64) embedding.
            prompt_encoder: SAM's prompt encoder, in the ``prompt_image_size`` frame.
            mask_decoder: SAM's mask decoder.
            config: the shapes the modules were built with.
        """
        PromptableSegmenter.__init__(self)
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config
        self.transform = EncoderResizeLongestSide(image_encoder.img_size, prompt_encoder.input_image_size[0])
        # Not persistent: the checkpoints do not store them. They give the model's device and dtype; the
        # normalisation itself runs in float32 whatever the dtype (see ``preprocess``).
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        """Side of the square encoder input (the prompt frame is ``transform.target_length``)."""
        return self.image_encoder.img_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a (B, 3, h, w) or (3, h, w) 0-255 image and zero-pad it to the square encoder input."""
        mean = torch.tensor(_MEAN_01, device=x.device).view(-1, 1, 1)
        std = torch.tensor(_STD_01, device=x.device).view(-1, 1, 1)
        x = (x.float() / 255 - mean) / std
        size = self.image_size
        return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2])).to(self.dtype)


def build_efficientvit_sam(name_or_config: str | EfficientViTSamConfig = "efficientvit_sam_l0") -> EfficientViTSam:
    """A randomly initialised EfficientViT-SAM of a registry name or config (eval mode)."""
    config = get_efficientvit_sam_config(name_or_config)
    grid = config.embedding_size
    prompt_encoder = PromptEncoder(embed_dim=config.prompt_embed_dim, image_embedding_size=(grid, grid),
                                   input_image_size=(config.prompt_image_size, config.prompt_image_size),
                                   mask_in_chans=config.mask_in_chans)
    transformer = TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_embed_dim,
                                    num_heads=config.decoder_num_heads, mlp_dim=config.decoder_mlp_dim)
    for module in transformer.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = config.decoder_layer_norm_eps
    mask_decoder = MaskDecoder(transformer_dim=config.prompt_embed_dim, transformer=transformer,
                               num_multimask_outputs=config.num_multimask_outputs,
                               iou_head_depth=config.iou_head_depth, iou_head_hidden_dim=config.iou_head_hidden_dim)
    return EfficientViTSam(EfficientViTSamImageEncoder(config), prompt_encoder, mask_decoder, config).eval()

"""EfficientViTSam: the EfficientViT image encoder with SAM 1's prompt encoder and mask decoder, behind the model
interface, and its builder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.models.efficientvit.config import EfficientViTSamConfig, get_efficientvit_sam_config
from sam_core.models.efficientvit.image_encoder import EfficientViTSamImageEncoder
from sam_core.models.efficientvit.transform import EncoderResizeLongestSide
from sam_core.models.sam.mask_decoder import MaskDecoder
from sam_core.models.sam.model import PIXEL_MEAN, PIXEL_STD, Sam, build_mask_decoder, build_prompt_encoder
from sam_core.models.sam.prompt_encoder import PromptEncoder

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
        transform = EncoderResizeLongestSide(image_encoder.img_size, prompt_encoder.input_image_size[0])
        super().__init__(image_encoder, prompt_encoder, mask_decoder, config, transform)
        # pixel_mean / pixel_std (Sam's buffers) give the model's device and dtype; the normalisation itself runs
        # in float32 whatever the dtype (see ``preprocess``).

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
    # Prompts and masks are in the prompt frame (1024), not the encoder's.
    prompt_encoder = build_prompt_encoder(config, image_size=config.prompt_image_size)
    mask_decoder = build_mask_decoder(config)
    for module in mask_decoder.transformer.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = config.decoder_layer_norm_eps
    return EfficientViTSam(EfficientViTSamImageEncoder(config), prompt_encoder, mask_decoder, config).eval()

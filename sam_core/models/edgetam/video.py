"""EdgeTamVideo: EdgeTAM's tracking model, SAM 2's (:class:`~sam_core.models.sam2.video.model.Sam2Video`) with
its memories compressed by the spatial perceiver and its memory attention's cross-attention rotating the
latents on their own grid. Module names are Meta's (``spatial_perceiver``, ``memory_attention``...)."""

from __future__ import annotations

from functools import partial

import torch

from sam_core.models.edgetam.config import EdgeTamConfig, get_edgetam_config
from sam_core.models.edgetam.memory_attention import LatentGridAttention
from sam_core.models.edgetam.model import EdgeTam, build_edgetam
from sam_core.models.edgetam.perceiver import SpatialPerceiver
from sam_core.models.sam2.image_encoder import ImageEncoder
from sam_core.models.sam2.mask_decoder import Sam2MaskDecoder
from sam_core.models.sam2.prompt_encoder import Sam2PromptEncoder
from sam_core.models.sam2.video.memory_attention import MemoryAttention
from sam_core.models.sam2.video.model import Sam2Video


class EdgeTamVideo(Sam2Video, EdgeTam):
    """EdgeTAM with its video modules. Build it with :func:`build_edgetam_video` or from a loaded image model and
    the checkpoint's video tensors with :meth:`from_image_model`.

    A frame's memory is the perceiver's latents (B, perceiver_latents + perceiver_latents_2d, mem_dim) instead of
    SAM 2's (B, mem_dim, S/16, S/16) map; everything else is SAM 2's tracking step.

    Args: as :class:`~sam_core.models.sam2.video.model.Sam2Video`'s; ``config`` is an EdgeTamConfig.
    """

    def __init__(self, image_encoder: ImageEncoder, sam_prompt_encoder: Sam2PromptEncoder,
                 sam_mask_decoder: Sam2MaskDecoder, config: EdgeTamConfig) -> None:
        super().__init__(image_encoder, sam_prompt_encoder, sam_mask_decoder, config)
        self.spatial_perceiver = SpatialPerceiver(config.mem_dim, config.perceiver_depth, config.perceiver_latents,
                                                  config.perceiver_latents_2d, config.perceiver_heads,
                                                  config.perceiver_dim_head, config.perceiver_ff_mult)

    def build_memory_attention(self, config: EdgeTamConfig) -> MemoryAttention:
        cross_attention = partial(LatentGridAttention, config.d_model, config.memory_attention_heads, config.mem_dim,
                                  config.rope_theta, round(config.perceiver_latents_2d**0.5),
                                  config.perceiver_latents + config.perceiver_latents_2d)
        return MemoryAttention(config.d_model, config.mem_dim, config.memory_attention_layers,
                               config.memory_attention_heads, config.memory_attention_mlp_dim, config.rope_theta,
                               cross_attention=cross_attention)

    def encode_memory(self, vision: torch.Tensor, high_res_masks: torch.Tensor, object_score_logits: torch.Tensor,
                      binarize: bool = False) -> torch.Tensor:
        """SAM 2's memory of the frame (see :meth:`Sam2Video.encode_memory`) through the perceiver: latents
        (B, perceiver_latents + perceiver_latents_2d, mem_dim)."""
        memory = super().encode_memory(vision, high_res_masks, object_score_logits, binarize)
        return self.spatial_perceiver(memory, self.memory_encoder.position_encoding(memory))

    def memory_tokens(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return memory, self.spatial_perceiver.positions(memory.device)


def build_edgetam_video(name_or_config: str | EdgeTamConfig = "edgetam") -> EdgeTamVideo:
    """A randomly initialised EdgeTamVideo of the given registry name or config (eval mode)."""
    return EdgeTamVideo.around(build_edgetam(get_edgetam_config(name_or_config))).eval()

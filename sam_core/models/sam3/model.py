"""Sam3: SAM 3's promptable visual segmentation for images (points, boxes, masks), behind the model interface,
and its builder.

SAM 3's tracker is SAM 2.1's prompt encoder, mask decoder (with its high-resolution skips) and "no memory"
embedding on a new image encoder: the ViT (:mod:`sam_core.models.sam3.vit`) and the tracker's simple FPN neck
(:mod:`sam_core.models.sam3.neck`), at stride 14 (a 72 x 72 embedding of a 1008 x 1008 input, masks of 288 x 288).
Everything after the image encoder is :class:`~sam_core.models.sam2.model.Sam2`'s; parameter names are those
of Meta's tracker (``image_encoder.trunk`` for the ViT, ``image_encoder.neck.convs`` for the tracker neck,
``sam_prompt_encoder``, ``sam_mask_decoder``, ``no_mem_embed``).
"""

from __future__ import annotations

from sam_core.models.sam.model import build_mask_decoder, build_prompt_encoder
from sam_core.models.sam2.image_encoder import ImageEncoder
from sam_core.models.sam2.mask_decoder import Sam2MaskDecoder
from sam_core.models.sam2.model import DECODER_SETTINGS, Sam2
from sam_core.models.sam2.prompt_encoder import Sam2PromptEncoder
from sam_core.models.sam2.transformer import Sam2TwoWayTransformer
from sam_core.models.sam3.config import NECK_SCALES, Sam3Config, get_sam3_config
from sam_core.models.sam3.neck import SimpleFpnNeck
from sam_core.models.sam3.vit import ViT

# SAM 3 normalises the [0, 1] image with mean and std 0.5 (to [-1, 1]).
SAM3_INPUT_STATISTICS = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class Sam3(Sam2):
    """SAM 3 for images: :class:`~sam_core.models.sam2.model.Sam2` with SAM 3's image encoder and input
    normalisation. Build it with :func:`build_sam3_model` or load it with ``sam_core.load_sam``.

    Args:
        image_encoder: The ViT and the tracker neck.
        sam_prompt_encoder: Points, boxes (as labelled corners) and masks -> embeddings.
        sam_mask_decoder: Embeddings -> masks, IoU and object scores; owns ``conv_s0``/``conv_s1``.
        config: The config the modules were built from, if any.
    """

    family = "sam3"
    input_statistics = SAM3_INPUT_STATISTICS


def build_sam3_parts(config: Sam3Config) -> tuple[ImageEncoder, Sam2PromptEncoder, Sam2MaskDecoder]:
    """The image encoder, prompt encoder and mask decoder of ``config``, randomly initialised."""
    trunk = ViT(image_size=config.image_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
                depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
                window_size=config.window_size, global_att_blocks=config.global_att_blocks,
                pretrain_image_size=config.pretrain_image_size, eps=config.layer_norm_eps)
    neck = SimpleFpnNeck(config.embed_dim, config.d_model, NECK_SCALES)
    prompt_encoder = build_prompt_encoder(config, Sam2PromptEncoder, width=config.d_model)
    mask_decoder = build_mask_decoder(config, Sam2MaskDecoder, Sam2TwoWayTransformer, width=config.d_model,
                                      **{name: getattr(config, name) for name in DECODER_SETTINGS})
    return ImageEncoder(trunk, neck), prompt_encoder, mask_decoder


def build_sam3_model(name_or_config: str | Sam3Config = "sam3") -> Sam3:
    """A SAM 3 image model from its config.

    Args:
        name_or_config: a registry name of ``SAM3_CONFIGS`` ("sam3", "sam3_test") or a Sam3Config.

    Returns:
        The Sam3, randomly initialised, in eval mode.
    """
    config = get_sam3_config(name_or_config)
    return Sam3(*build_sam3_parts(config), config).eval()

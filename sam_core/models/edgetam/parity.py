"""The references of EdgeTAM parity tests, on random weights with every tensor randomised (BatchNorm statistics,
latents and position embeddings included).

- transformers' EdgeTamModel / EdgeTamVideoModel, built here with an explicit RepViT backbone config:
  ``EdgeTamConfig()`` alone builds a ResNet-50 (its default backbone config misspells ``architecture``) and
  ``EdgeTamVideoConfig()`` a Hiera trunk.
- Meta's code (``edgetam-dimos``, whose package is also named ``sam2`` and collides with SAM 2's): run in a
  process of its own by ``tests/models/edgetam/meta_edgetam.py`` (see :func:`run_meta_reference`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from sam_core.models.edgetam.config import EdgeTamConfig

META_SCRIPT = Path(__file__).resolve().parents[3] / "tests" / "models" / "edgetam" / "meta_edgetam.py"


def hf_backbone_config(config: EdgeTamConfig) -> Any:
    """transformers' TimmWrapperConfig of ``config``'s RepViT trunk, ``architecture`` spelt right."""
    # Imported here: reference code (test extra), imported only by the parity tests.
    from transformers import TimmWrapperConfig

    return TimmWrapperConfig(architecture="repvit_m1", model_args=dict(
        in_chans=3, features_only=True, out_indices=[0, 1, 2, 3], embed_dim=list(config.repvit_embed_dims),
        depth=list(config.repvit_depths)))


def hf_image_config_fields(config: EdgeTamConfig) -> dict[str, Any]:
    """vision_config, prompt_encoder_config and mask_decoder_config of ``config`` for transformers."""
    sizes = [[config.image_size // 4 // 2**level] * 2 for level in range(3)]
    return dict(
        vision_config=dict(model_type="edgetam_vision_model", backbone_config=hf_backbone_config(config),
                           backbone_channel_list=list(config.backbone_channel_list), backbone_feature_sizes=sizes,
                           fpn_hidden_size=config.d_model),
        prompt_encoder_config=dict(hidden_size=config.d_model, image_size=config.image_size, patch_size=16,
                                   mask_input_channels=config.mask_in_chans),
        mask_decoder_config=dict(hidden_size=config.d_model, mlp_dim=config.decoder_mlp_dim,
                                 iou_head_hidden_dim=config.iou_head_hidden_dim))


def randomize_all_(model: torch.nn.Module, seed: int) -> None:
    """Perturb every parameter (zero- and one-initialised ones too) and give BatchNorms random statistics."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_((0.1 if param.dim() < 2 or not param.any() else 0.02) * torch.randn_like(param))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.2 * torch.randn_like(buffer))
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)


def make_hf_edgetam(config: EdgeTamConfig, seed: int = 0) -> torch.nn.Module:
    """transformers' EdgeTamModel with the shapes of ``config`` and random weights (eval mode)."""
    # Imported here: reference code (test extra), imported only by the parity tests.
    from transformers import EdgeTamConfig as HFEdgeTamConfig
    from transformers import EdgeTamModel

    model = EdgeTamModel(HFEdgeTamConfig(**hf_image_config_fields(config)))
    randomize_all_(model, seed)
    with torch.no_grad():  # tied in transformers (save_pretrained writes one): kept equal, as in real files
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)
    return model.eval()


def run_meta_reference(reference_dir: Path, config: EdgeTamConfig, output: Path, seed: int = 0,
                       **tasks: Any) -> dict[str, Any]:
    """Build Meta's EdgeTAM with ``config``'s shapes in a subprocess whose ``sam2`` is the one installed in
    ``reference_dir`` (``pip install --no-deps --target DIR edgetam-dimos==1.0.1``), run ``tasks`` (``image=``,
    ``video=``: see the script) and return what it wrote: ``edgetam.pt`` (Meta's format) and each task's
    outputs, loaded."""
    output.mkdir(parents=True, exist_ok=True)
    spec = {"config": config.to_dict(), "seed": seed, "output": str(output), **tasks}
    spec_path = output / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(reference_dir), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(META_SCRIPT), str(spec_path)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"Meta's EdgeTAM reference failed:\n{done.stderr[-4000:]}")
    results: dict[str, Any] = {"checkpoint": output / "edgetam.pt"}
    for task in tasks:
        results[task] = torch.load(output / f"{task}.pt", weights_only=False)
    return results


def make_hf_edgetam_video(config: EdgeTamConfig, seed: int = 0) -> torch.nn.Module:
    """transformers' EdgeTamVideoModel with the shapes and video settings of ``config``, every tensor random and
    the object-score head forced to say "present" (else every mask is empty), in eval mode. transformers fixes the
    memory width at 64 and always projects the memory encoder's output: ``config`` needs mem_dim 64 and
    d_model != 64."""
    # Imported here: reference code (test extra), imported only by the parity tests.
    from transformers import EdgeTamVideoConfig, EdgeTamVideoModel

    grid, key_grid = config.embedding_size, round(config.perceiver_latents_2d**0.5)
    hf_config = EdgeTamVideoConfig(
        **hf_image_config_fields(config), image_size=config.image_size, num_maskmem=config.num_maskmem,
        memory_attention_hidden_size=config.d_model, memory_attention_num_layers=config.memory_attention_layers,
        memory_attention_num_attention_heads=config.memory_attention_heads,
        memory_attention_mlp_hidden_size=config.memory_attention_mlp_dim,
        memory_attention_rope_feat_sizes=[grid, grid], memory_attention_rope_k_sizes=[key_grid, key_grid],
        perceiver_resampler_num_latents=config.perceiver_latents,
        perceiver_resampler_num_latents_2d=config.perceiver_latents_2d,
        perceiver_resampler_hidden_size=config.mem_dim,
        perceiver_resampler_mlp_intermediate_size=config.perceiver_ff_mult * config.mem_dim,
        perceiver_resampler_num_attention_heads=config.perceiver_heads,
        perceiver_resampler_attention_head_dim=config.perceiver_dim_head,
        perceiver_resampler_num_layers=config.perceiver_depth,
        memory_encoder_hidden_size=config.d_model, memory_encoder_output_channels=config.mem_dim,
        mask_downsampler_embed_dim=config.d_model, memory_fuser_embed_dim=config.d_model,
        memory_fuser_intermediate_dim=4 * config.d_model, max_object_pointers_in_encoder=config.max_obj_ptrs_in_encoder,
        enable_occlusion_spatial_embedding=config.no_obj_embed_spatial,
        enable_temporal_pos_encoding_for_object_pointers=config.add_tpos_enc_to_obj_ptrs)
    model = EdgeTamVideoModel(hf_config)
    randomize_all_(model, seed)
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(20.0)
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)
    return model.eval()

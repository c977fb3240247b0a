"""Meta's EdgeTAM (``edgetam-dimos``, a fork whose package is also named ``sam2``) run in a process of its own.

Usage: ``python meta_edgetam.py SPEC.json`` with the reference package first on ``PYTHONPATH``. The spec gives
the shapes (an EdgeTamConfig's ``to_dict``), a seed and an output folder; the script builds the reference from its
own ``configs/edgetam.yaml`` with those shapes, randomises every tensor (BatchNorm statistics, latents and
position embeddings included), writes ``edgetam.pt`` as Meta's files hold it and, for each task in the spec, the
reference's outputs (``image.pt``, ``video.pt``). Imports nothing from sam_core.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def listed(values: list) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def overrides(config: dict) -> list[str]:
    d_model, mem_dim, grid = config["d_model"], config["mem_dim"], config["image_size"] // 16
    key_grid = round(config["perceiver_latents_2d"] ** 0.5)
    neck, attention = "++model.image_encoder.neck.", "++model.memory_attention."
    layer = attention + "layer."
    encoder, perceiver = "++model.memory_encoder.", "++model.spatial_perceiver."
    values = [
        f"++model.image_size={config['image_size']}",
        f"{neck}d_model={d_model}", f"{neck}position_encoding.num_pos_feats={d_model}",
        f"{neck}backbone_channel_list={listed(config['repvit_embed_dims'][::-1])}",
        f"{attention}d_model={d_model}", f"{attention}num_layers={config['memory_attention_layers']}",
        f"{layer}d_model={d_model}", f"{layer}dim_feedforward={config['memory_attention_mlp_dim']}",
        f"{layer}self_attention.feat_sizes=[{grid},{grid}]",
        f"{layer}cross_attention.q_sizes=[{grid},{grid}]", f"{layer}cross_attention.k_sizes=[{key_grid},{key_grid}]",
        f"{layer}cross_attention.kv_in_dim={mem_dim}",
        f"{encoder}out_dim={mem_dim}", f"{encoder}in_dim={d_model}",
        f"{encoder}position_encoding.num_pos_feats={mem_dim}",
        f"{encoder}mask_downsampler.embed_dim={d_model}", f"{encoder}fuser.layer.dim={d_model}",
        f"{perceiver}dim={mem_dim}", f"{perceiver}depth={config['perceiver_depth']}",
        f"{perceiver}dim_head={config['perceiver_dim_head']}", f"{perceiver}heads={config['perceiver_heads']}",
        f"{perceiver}ff_mult={config['perceiver_ff_mult']}", f"{perceiver}num_latents={config['perceiver_latents']}",
        f"{perceiver}num_latents_2d={config['perceiver_latents_2d']}",
        f"{perceiver}position_encoding.num_pos_feats={mem_dim}",
    ]
    for attn in ("self_attention", "cross_attention"):
        values += [f"{layer}{attn}.embedding_dim={d_model}", f"{layer}{attn}.rope_theta={config['rope_theta']}",
                   f"{layer}{attn}.num_heads={config['memory_attention_heads']}"]
    for field in ("num_maskmem", "max_obj_ptrs_in_encoder", "memory_temporal_stride_for_eval",
                  "max_cond_frames_in_attn"):
        values.append(f"++model.{field}={config[field]}")
    return values


def patch_timm(config: dict) -> None:
    """The reference's trunk is ``timm.create_model("repvit_m1", pretrained=True)``: built here without the
    download, with the spec's stage widths and depths."""
    import sam2.modeling.backbones.timm as backbone
    from timm.models import create_model

    def create(name: str, pretrained: bool = False, **kwargs: object) -> torch.nn.Module:
        return create_model(name, pretrained=False, embed_dim=tuple(config["repvit_embed_dims"]),
                            depth=tuple(config["repvit_depths"]), **kwargs)

    backbone.create_model = create


def randomize_(model: torch.nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_((0.1 if param.dim() < 2 or not param.any() else 0.02) * torch.randn_like(param))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.2 * torch.randn_like(buffer))
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)


def build(config: dict, seed: int, video: bool) -> torch.nn.Module:
    from sam2.build_sam import build_sam2

    patch_timm(config)
    extra = overrides(config)
    if video:
        # Holes are not filled: Meta's filling needs its CUDA extension (sam_core's runs with fill_hole_area=0).
        extra = ["++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
                 "++model.binarize_mask_from_pts_for_mem_enc=true", "++model.fill_hole_area=0", *extra]
    torch.manual_seed(seed)  # the modules' own initialisation too: the same weights on every run
    model = build_sam2("configs/edgetam.yaml", device="cpu", hydra_overrides_extra=extra)
    randomize_(model, seed)
    if video:  # random weights mostly say "absent", and then every mask is empty: the object is made present
        with torch.no_grad():
            model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    return model.eval()


@torch.no_grad()
def run_image(model: torch.nn.Module, task: dict, out: Path) -> None:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model)
    side = model.image_size
    predictor._bb_feat_sizes = [(side // 4, side // 4), (side // 8, side // 8), (side // 16, side // 16)]
    image = np.load(task["image"])
    predictor.set_image(image)
    results = {"image_embed": predictor._features["image_embed"],
               "high_res_feats": predictor._features["high_res_feats"]}
    for index, prompt in enumerate(task["prompts"]):
        masks, scores, logits = predictor.predict(
            point_coords=np.array(prompt["points"], dtype=np.float32) if prompt.get("points") else None,
            point_labels=np.array(prompt["labels"]) if prompt.get("points") else None,
            box=np.array(prompt["box"], dtype=np.float32) if prompt.get("box") else None,
            multimask_output=prompt["multimask"], return_logits=True)
        results[f"prompt{index}"] = tuple(torch.from_numpy(a) for a in (masks, scores, logits))
    torch.save(results, out / "image.pt")


@torch.no_grad()
def run_video(predictor: torch.nn.Module, task: dict, out: Path) -> None:
    """Each step: {"frame", "object", "points", "labels", "box", "clear"} prompts, {"propagate": start} tracks;
    every returned mask tensor is kept, labelled, in order."""
    state = predictor.init_state(task["frames"])
    results = []
    for index, step in enumerate(task["steps"]):
        if "propagate" in step:
            for frame, obj_ids, masks in predictor.propagate_in_video(state, start_frame_idx=step["propagate"]):
                results.append((f"{index} propagate {frame}", list(obj_ids), masks))
        else:
            frame, obj_ids, masks = predictor.add_new_points_or_box(
                state, step["frame"], step["object"], points=step.get("points"), labels=step.get("labels"),
                box=step.get("box"), clear_old_points=step.get("clear", True))
            results.append((f"{index} prompt {frame}", list(obj_ids), masks))
    torch.save(results, out / "video.pt")


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(spec["output"])
    model = build(spec["config"], spec["seed"], video="video" in spec)
    torch.save({"model": model.state_dict()}, out / "edgetam.pt")
    if "image" in spec:
        run_image(model, spec["image"], out)
    if "video" in spec:
        run_video(model, spec["video"], out)


if __name__ == "__main__":
    main()

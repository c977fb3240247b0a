"""Hugging Face ``transformers`` ``Sam2VideoModel`` checkpoints in sam_core: the tensor names both ways, and the
tracked masks against transformers' own video inference on the same weights.

A tiny ``Sam2VideoModel`` with the shapes of ``sam2_hiera_test`` gets random values in every tensor (the
zero-initialised embeddings and layer scales included), its object-score head forced to say "present" (else every
mask is empty), and is written with ``save_pretrained``; sam_core loads that folder.

Parity runs transformers' model through its processor (prompt coordinates) and inference session, one frame at a
time as its ``propagate_in_video_iterator`` does. Two things are aligned on purpose, neither of them the model:
the session gets sam_core's preprocessed frames (transformers' video processor resizes with torch's bilinear
filter, Meta and sam_core with PIL's bicubic one), and its low-res masks are brought to the video's size with one
bilinear resize as Meta's predictor does (transformers' post-processing resizes twice). transformers fills no holes,
so sam_core's predictor runs with ``fill_hole_area=0``. Tolerance on the logits: 2e-3 (bfloat16 memories).
A click on a frame that already has a mask (a correction) is where transformers departs from Meta: Meta's predictor
(and sam_core) gives the decoder that frame's previous mask logits as its mask input, transformers' session never
passes them (its ``_run_single_frame_inference`` takes ``prev_sam_mask_logits`` but no caller sets it). The test
feeds them to transformers as Meta does (``with_previous_mask_input``); without that the corrected frame's logits differ
by about 1e-2 and the frames tracked from it by about 1e-4.

Both video configurations run: SAM 2.1's and SAM 2.0's (transformers' ``enable_occlusion_spatial_embedding`` and
``enable_temporal_pos_encoding_for_object_pointers`` off: no spatial no-object embedding, no temporal encoding of the
object pointers).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from test_sam2_video import HEIGHT, WIDTH, draw_clip

from sam_core import SAM2_CONFIGS, Sam2Video, VideoPredictor, load_checkpoint
from sam_core.io.video_frames import VideoFrames
from sam_core.models.sam2.config import Sam2Config, as_sam2_0
from sam_core.models.sam2.model import PIXEL_MEAN, PIXEL_STD
from sam_core.models.sam2.parity import make_hf_sam2, make_reference_video_predictor, with_previous_mask_input

transformers = pytest.importorskip("transformers")

TOL = 2e-3
# transformers' memory cross-attention reads 64-channel memories (its kv_in_dim is fixed), and its memory encoder
# always ends in a projection (Meta's only when mem_dim differs from d_model): hence d_model 128, mem_dim 64. At
# 128 x 128 pixels (an 8 x 8 memory grid) every code path runs, for a quarter of the work.
CONFIG = dataclasses.replace(SAM2_CONFIGS["sam2_hiera_test"], d_model=128, mem_dim=64, image_size=128)
CONFIGS = {"sam2.1": CONFIG, "sam2.0": as_sam2_0(CONFIG)}
MEASURED: dict[str, float] = {}


def make_hf_video_model(config: Sam2Config, seed: int = 0) -> torch.nn.Module:
    """transformers' Sam2VideoModel with the shapes and video settings of ``config``, every tensor random."""
    image = make_hf_sam2(config).config  # the image model's sub-configs, as the image parity tests build them
    hf_config = transformers.Sam2VideoConfig(
        vision_config=image.vision_config.to_dict(), prompt_encoder_config=image.prompt_encoder_config.to_dict(),
        mask_decoder_config=image.mask_decoder_config.to_dict(),
        image_size=config.image_size, num_maskmem=config.num_maskmem,
        memory_attention_hidden_size=config.d_model, memory_attention_num_layers=config.memory_attention_layers,
        memory_attention_num_attention_heads=config.memory_attention_heads,
        memory_attention_feed_forward_hidden_size=config.memory_attention_mlp_dim,
        memory_attention_rope_feat_sizes=[config.embedding_size] * 2, memory_encoder_hidden_size=config.d_model,
        memory_encoder_output_channels=config.mem_dim, mask_downsampler_embed_dim=config.d_model,
        memory_fuser_embed_dim=config.d_model, memory_fuser_intermediate_dim=4 * config.d_model,
        max_object_pointers_in_encoder=config.max_obj_ptrs_in_encoder,
        enable_occlusion_spatial_embedding=config.no_obj_embed_spatial,
        # One switch in transformers for Meta's three (signed distance, sine encoding, projection).
        enable_temporal_pos_encoding_for_object_pointers=config.add_tpos_enc_to_obj_ptrs)
    torch.manual_seed(seed)
    model = transformers.Sam2VideoModel(hf_config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "pos_embed" not in name and "positional_encoding" not in name:
                param.normal_(0.0, 0.05)
            else:
                param.add_(0.1 * torch.randn_like(param))
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(20.0)  # the object is present
        # Tied in transformers (save_pretrained writes one): kept equal, as in real checkpoints.
        model.shared_image_embedding.positional_embedding.normal_()
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)
    return model


class Models(NamedTuple):
    hf_model: torch.nn.Module
    hf_folder: Path
    ours: Sam2Video


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Models]:
    """Per version (a key of CONFIGS), built once: transformers' random model, its saved folder and sam_core's
    model loaded from that folder."""
    @functools.cache
    def build(version: str) -> Models:
        hf_model = make_hf_video_model(CONFIGS[version])
        folder = tmp_path_factory.mktemp("hf") / f"{version}-video-test"
        hf_model.save_pretrained(folder)
        loaded = load_checkpoint(folder)
        assert loaded.model.config == CONFIGS[version]
        return Models(hf_model, folder, Sam2Video.from_image_model(loaded.model, loaded.extras))
    return build


@pytest.fixture(scope="module")
def hf_folder(models: Callable[[str], Models]) -> Path:
    return models("sam2.1").hf_folder


# ------------------------------------------------------------------------------------------------ tensor names

@pytest.mark.parametrize("version", list(CONFIGS))
def test_every_hf_tensor_lands_once_under_a_meta_name(models, version):
    """Matched by value (every tensor is random), not by the renaming rules under test: each of transformers'
    tensors is exactly one of sam_core's (the (4, C) point embedding is Meta's four (1, C) rows), and nothing else."""
    hf_model, _, ours = models(version)
    hf = {name: t for name, t in hf_model.state_dict().items()
          if name != "prompt_encoder.shared_embedding.positional_embedding"}  # the tied copy
    point_rows = hf.pop("prompt_encoder.point_embed.weight")
    hf.update({f"point_embed row {i}": row[None] for i, row in enumerate(point_rows)})
    sam_core = ours.state_dict()
    by_value: dict[tuple, list[str]] = {}
    for name, tensor in sam_core.items():
        by_value.setdefault((tuple(tensor.shape), tuple(tensor.flatten()[:8].tolist())), []).append(name)
    matched = set()
    for name, tensor in hf.items():
        candidates = [c for c in by_value.get((tuple(tensor.shape), tuple(tensor.flatten()[:8].tolist())), [])
                      if torch.equal(sam_core[c], tensor)]
        assert len(candidates) == 1, f"{name}: {candidates}"
        matched.add(candidates[0])
    assert matched == set(sam_core)


@pytest.mark.parametrize("version", list(CONFIGS))
def test_meta_video_predictor_takes_the_mapped_names(models, version):
    """Meta's SAM2VideoPredictor of the same config loads sam_core's tensors (mapped from transformers') strictly."""
    reference = make_reference_video_predictor(CONFIGS[version], seed=1)
    state = models(version).ours.state_dict()
    reference.load_state_dict(state, strict=True)
    assert all(torch.equal(reference.state_dict()[name], tensor) for name, tensor in state.items())


def test_hf_video_config_reaches_sam2_config(hf_folder, tmp_path):
    """SAM 2.0's video settings and other sizes come from config.json; unsupported settings are refused."""
    import json

    from sam_core.errors import CheckpointError
    from sam_core.models.sam2.hf_format import sam2_config_from_hf

    hf_config = json.loads((hf_folder / "config.json").read_text())
    sam2_0 = {**hf_config, "enable_occlusion_spatial_embedding": False,
              "enable_temporal_pos_encoding_for_object_pointers": False, "num_maskmem": 5,
              "max_object_pointers_in_encoder": 8, "rope_parameters": {"rope_type": "default", "rope_theta": 500.0}}
    config = sam2_config_from_hf(sam2_0)
    assert (config.no_obj_embed_spatial, config.add_tpos_enc_to_obj_ptrs, config.proj_tpos_enc_in_obj_ptrs,
            config.use_signed_tpos_enc_to_obj_ptrs) == (False, False, False, False)
    assert (config.num_maskmem, config.max_obj_ptrs_in_encoder, config.rope_theta) == (5, 8, 500.0)
    with pytest.raises(CheckpointError, match="memory_fuser_kernel_size=5.*memory_attention_hidden_size=32"):
        sam2_config_from_hf({**hf_config, "memory_fuser_kernel_size": 5, "memory_attention_hidden_size": 32})


# ------------------------------------------------------------------------------------------------------ masks

@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return draw_clip(tmp_path_factory.mktemp("clip") / "frames")


class Prompt(NamedTuple):
    frame: int
    object_id: int
    points: list | None = None
    labels: list | None = None
    box: list | None = None


class Propagate(NamedTuple):
    start: int | None = None
    reverse: bool = False


# Each scenario: the calls, in order. Object 2 starts on a later frame. The correction clicks on frame 4 after it
# was tracked (a non-conditioning frame, segmented from memory); the second propagation starts after it, so frames
# 5-7 track from the corrected mask's memory (a pass through frame 4 would recompute it, as in Meta's predictor).
SCENARIOS: dict[str, list[Prompt | Propagate]] = {
    "first_frame": [Prompt(0, 1, [[25, 35]], [1]), Propagate()],
    "later_frame_forward_and_reverse": [Prompt(2, 1, [[30, 30], [90, 40]], [1, 0]), Propagate(),
                                        Propagate(2, reverse=True)],
    "two_objects": [Prompt(0, 1, box=[8, 18, 42, 52]), Prompt(3, 2, [[90, 45], [30, 80]], [1, 0]), Propagate(),
                    Propagate(3, reverse=True)],
    "correction_click_mid_video": [Prompt(0, 1, [[90, 30]], [1]), Propagate(), Prompt(4, 1, [[60, 40]], [0]),
                                   Propagate(5)],
}
# SAM 2.0's video settings change what the memories and pointers carry, not the prompting: two scenarios suffice.
CASES = [("sam2.1", name) for name in SCENARIOS] + [("sam2.0", "first_frame"),
                                                     ("sam2.0", "later_frame_forward_and_reverse")]


def run_hf(model: torch.nn.Module, frames: torch.Tensor, steps: list[Prompt | Propagate]) -> list:
    video_processor = transformers.Sam2VideoVideoProcessor(size={"height": CONFIG.image_size,
                                                                 "width": CONFIG.image_size})
    image_processor = transformers.Sam2ImageProcessor(size={"height": CONFIG.image_size,
                                                                "width": CONFIG.image_size})
    processor = transformers.Sam2VideoProcessor(image_processor, video_processor, target_size=CONFIG.image_size)
    session = transformers.Sam2VideoInferenceSession(video=frames, video_height=HEIGHT, video_width=WIDTH,
                                                       dtype=torch.float32)
    outputs = []

    def keep(label: str, output) -> None:
        masks = F.interpolate(output.pred_masks.float(), size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
        outputs.append((label, list(output.object_ids), masks))

    model._run_single_frame_inference = with_previous_mask_input(model)
    try:
        with torch.inference_mode():
            for index, step in enumerate(steps):
                if isinstance(step, Prompt):
                    frame, object_id, points, labels, box = step
                    processor.add_inputs_to_inference_session(
                        session, frame_idx=frame, obj_ids=object_id,
                        input_points=None if points is None else [[points]],
                        input_labels=None if labels is None else [[labels]],
                        input_boxes=None if box is None else [[box]])
                    # Meta's add_new_points_or_box returns the prompted object's masks on that frame (others: empty).
                    keep(f"{index} prompt {frame} {object_id}", model(inference_session=session, frame_idx=frame))
                else:
                    for output in model.propagate_in_video_iterator(session, start_frame_idx=step.start,
                                                                    reverse=step.reverse):
                        keep(f"{index} propagate {step.start} {step.reverse} {output.frame_idx}", output)
    finally:
        del model._run_single_frame_inference  # back to the class's method
    return outputs


def run_ours(predictor: VideoPredictor, clip: Path, steps: list[Prompt | Propagate]) -> list:
    state = predictor.init_state(str(clip))
    outputs = []
    for index, step in enumerate(steps):
        if isinstance(step, Prompt):
            _, obj_ids, masks = predictor.add_new_points_or_box(state, step.frame, step.object_id, points=step.points,
                                                                labels=step.labels, box=step.box)
            outputs.append((f"{index} prompt {step.frame} {step.object_id}", list(obj_ids), masks))
        else:
            for frame, obj_ids, masks in predictor.propagate_in_video(state, start_frame_idx=step.start,
                                                                      reverse=step.reverse):
                outputs.append((f"{index} propagate {step.start} {step.reverse} {frame}", list(obj_ids), masks))
    return outputs


@pytest.mark.parametrize(("version", "name"), CASES)
def test_tracking_matches_transformers(models, clip, version, name):
    hf_model, _, ours = models(version)
    reader = VideoFrames(clip, CONFIG.image_size, PIXEL_MEAN, PIXEL_STD)
    frames = torch.stack([reader[index] for index in range(len(reader))])
    expected = run_hf(hf_model, frames, SCENARIOS[name])
    actual = run_ours(VideoPredictor(ours, fill_hole_area=0), clip, SCENARIOS[name])
    assert [label for label, _, _ in actual] == [label for label, _, _ in expected]
    worst, differing = 0.0, 0
    for (label, obj_ids, masks), (_, hf_ids, hf_masks) in zip(actual, expected):
        assert obj_ids == hf_ids, label
        if " prompt " in label:  # transformers also tracks the other objects on a prompted frame
            index = obj_ids.index(int(label.split()[3]))
            masks, hf_masks = masks[index:index + 1], hf_masks[index:index + 1]
        assert masks.shape == hf_masks.shape, label
        diff = (masks - hf_masks).abs().max().item()
        worst = max(worst, diff)
        assert diff <= TOL, f"{label}: max logit difference {diff}"
        differing += int(((masks > 0) != (hf_masks > 0)).sum())
    # Nothing trivial: each object present on some frames' pixels and absent on others.
    assert all(((m > 0).any() and (m <= 0).any()) for _, _, m in expected)
    MEASURED[f"{version} {name}"] = worst
    print(f"{version} {name}: max |logit difference| {worst:.2e}, {differing} mask pixels differ")

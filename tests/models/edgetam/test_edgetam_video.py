"""EdgeTAM's tracking against Meta's EdgeTAM video predictor (``edgetam-dimos``, in a subprocess) and
transformers' EdgeTamVideoModel, on the same random weights (every tensor randomised; the object-score head
forced to say "present", else every mask is empty): a 12-frame clip, one object prompted with a box and a click
on frame 0, tracked, corrected with a click on frame 7 (a tracked, non-conditioning frame: the decoder gets its
earlier mask as input), tracked again from frame 8 on the corrected memory. Every returned mask (logits at video
resolution) is compared. Tolerance on the logits: 2e-3 (memories are stored in bfloat16 on every side).

Meta's predictor runs with ``fill_hole_area=0`` (its hole filling needs its CUDA extension) and so does sam_core's.
Meta's EdgeTAM predictor is an older SAM 2 predictor than ``sam2==1.1.0``'s, which sam_core follows: on a correction
click it turns every object's output on that frame into a conditioning frame, where the newer one (and sam_core)
does so for the clicked object only, and a later pass through a corrected non-conditioning frame yields its stored
output where the newer one tracks it again. With one object, and the second pass starting after the corrected
frame, the two agree.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from edgetam_case import CONFIG, HEIGHT, STEPS, WIDTH
from PIL import Image

from sam_core import VideoPredictor
from sam_core.errors import CheckpointError
from sam_core.io.checkpoints import load_checkpoint, save_meta_checkpoint
from sam_core.io.video_frames import VideoFrames
from sam_core.models.edgetam.parity import make_hf_edgetam_video
from sam_core.models.edgetam.video import EdgeTamVideo, build_edgetam_video
from sam_core.models.sam2.model import PIXEL_MEAN, PIXEL_STD
from sam_core.models.sam2.parity import hf_previous_mask_as_meta

TOL = 2e-3


def run_ours(predictor: VideoPredictor, clip: Path) -> list:
    state = predictor.init_state(str(clip))
    outputs = []
    for index, step in enumerate(STEPS):
        if "propagate" in step:
            for frame, obj_ids, masks in predictor.propagate_in_video(state, start_frame_idx=step["propagate"]):
                outputs.append((f"{index} propagate {frame}", list(obj_ids), masks))
        else:
            frame, obj_ids, masks = predictor.add_new_points_or_box(
                state, step["frame"], step["object"], points=step.get("points"), labels=step.get("labels"),
                box=step.get("box"), clear_old_points=step.get("clear", True))
            outputs.append((f"{index} prompt {frame}", list(obj_ids), masks))
    return outputs


def compare(actual: list, expected: list) -> float:
    assert [label for label, _, _ in actual] == [label for label, _, _ in expected]
    worst = 0.0
    for (label, obj_ids, masks), (_, ref_ids, ref_masks) in zip(actual, expected):
        assert obj_ids == ref_ids and masks.shape == ref_masks.shape == (1, 1, HEIGHT, WIDTH), label
        diff = (masks.float() - ref_masks.float()).abs().max().item()
        worst = max(worst, diff)
        assert diff <= TOL, f"{label}: max logit difference {diff}"
    # Not trivial: on most frames (the random model may lose the object on some) the object covers part of the
    # frame, and the prompted frames' masks are never empty or full.
    nontrivial = [bool((m > 0).any() and (m <= 0).any()) for _, _, m in expected]
    assert sum(nontrivial) >= len(expected) // 2
    assert all(flag for (label, _, _), flag in zip(expected, nontrivial) if " prompt " in label)
    return worst


def test_tracking_matches_meta(meta, clip, tmp_path):
    loaded = load_checkpoint(meta["checkpoint"], config=CONFIG)
    model = EdgeTamVideo.from_image_model(loaded.model, loaded.extras)
    worst = compare(run_ours(VideoPredictor(model, fill_hole_area=0), clip), meta["video"])
    print(f"EdgeTAM video vs Meta: max |logit difference| {worst:.2e}")
    # Written back in Meta's layout (sam-convert DST.pt), the file holds Meta's tensors under Meta's names.
    expected = torch.load(meta["checkpoint"])["model"]
    written = torch.load(save_meta_checkpoint(model, tmp_path / "written.pt"))["model"]
    assert written.keys() == expected.keys() and all(torch.equal(written[k], expected[k]) for k in expected)
    with pytest.raises(CheckpointError, match="hold the video model"):
        save_meta_checkpoint(loaded.model, tmp_path / "image_only.pt")


# transformers' memory cross-attention reads 64-channel memories and its memory encoder always ends in a projection
# (Meta's only when mem_dim differs from d_model): d_model 128, mem_dim 64 (perceiver: 2 heads of 32).
HF_CONFIG = dataclasses.replace(CONFIG, d_model=128, mem_dim=64, perceiver_dim_head=32)


def run_hf(model: torch.nn.Module, frames: torch.Tensor) -> list:
    """The steps through transformers' processor (prompt coordinates) and inference session, its low-res masks
    brought to the video's size with one bilinear resize as Meta's predictor does."""
    import transformers

    size = {"height": HF_CONFIG.image_size, "width": HF_CONFIG.image_size}
    processor = transformers.Sam2VideoProcessor(transformers.Sam2ImageProcessor(size=size),
                                                transformers.Sam2VideoVideoProcessor(size=size),
                                                target_size=HF_CONFIG.image_size)
    session = transformers.EdgeTamVideoInferenceSession(video=frames, video_height=HEIGHT, video_width=WIDTH,
                                                        dtype=torch.float32)
    outputs = []

    def keep(label: str, output) -> None:
        masks = F.interpolate(output.pred_masks.float(), size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
        outputs.append((label, list(output.object_ids), masks))

    hf_previous_mask_as_meta(model)
    try:
        with torch.inference_mode():
            for index, step in enumerate(STEPS):
                if "propagate" in step:
                    for output in model.propagate_in_video_iterator(session, start_frame_idx=step["propagate"]):
                        keep(f"{index} propagate {output.frame_idx}", output)
                    continue
                box, points = step.get("box"), step.get("points")
                processor.add_inputs_to_inference_session(
                    session, frame_idx=step["frame"], obj_ids=step["object"],
                    input_points=None if points is None else [[points]],
                    input_labels=None if points is None else [[step["labels"]]],
                    input_boxes=None if box is None else [[box]], clear_old_inputs=step.get("clear", True))
                keep(f"{index} prompt {step['frame']}", model(inference_session=session, frame_idx=step["frame"]))
    finally:
        del model._run_single_frame_inference  # back to the class's method
    return outputs


def test_tracking_matches_transformers(clip, tmp_path):
    """Two things are aligned on purpose, neither of them the model: the session gets sam_core's preprocessed
    frames (transformers' video processor resizes with torch's bilinear filter, Meta and sam_core with PIL's
    bicubic one), and transformers fills no holes (sam_core's predictor runs with ``fill_hole_area=0``)."""
    hf_model = make_hf_edgetam_video(HF_CONFIG, seed=2)
    hf_model.save_pretrained(tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert loaded.model.config == HF_CONFIG
    model = EdgeTamVideo.from_image_model(loaded.model, loaded.extras)
    reader = VideoFrames(clip, HF_CONFIG.image_size, PIXEL_MEAN, PIXEL_STD)
    frames = torch.stack([reader[index] for index in range(len(reader))])
    worst = compare(run_ours(VideoPredictor(model, fill_hole_area=0), clip), run_hf(hf_model, frames))
    print(f"EdgeTAM video vs transformers: max |logit difference| {worst:.2e}")


def test_sam_video_tracks_with_an_edgetam_file(clip, tmp_path):
    """``sam-video --model edgetam.pt`` (a registry-shaped EdgeTAM in Meta's file layout) writes the masks that
    VideoPredictor gives through the Python API, on the first frames of the clip."""
    from sam_core.cli.video import main

    model = build_edgetam_video("edgetam_test")
    with torch.no_grad():  # random weights mostly say "absent": the object is made present
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    torch.save({"model": model.state_dict()}, tmp_path / "edgetam.pt")
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        (frames / f"{index:05d}.jpg").write_bytes((clip / f"{index:05d}.jpg").read_bytes())
    prompts = {"objects": [1], "prompts": [{"frame": 0, "object": 1, "points": [[25, 35]], "labels": [1]}]}
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    assert main(["--model", str(tmp_path / "edgetam.pt"), "--video", str(frames), "--prompts",
                 str(tmp_path / "prompts.json"), "--output", str(tmp_path / "out")]) == 0
    predictor = VideoPredictor(model)
    state = predictor.init_state(str(frames))
    predictor.add_new_points_or_box(state, 0, 1, points=[[25, 35]], labels=[1])
    pixels = []
    for frame, _, logits in predictor.propagate_in_video(state):
        written = np.array(Image.open(tmp_path / "out" / f"{frame:05d}" / "1.png")) > 0
        assert np.array_equal(written, (logits[0, 0] > 0).numpy()), frame
        pixels.append(written.sum())
    assert len(pixels) == 3 and 0 < max(pixels) < HEIGHT * WIDTH

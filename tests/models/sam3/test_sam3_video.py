"""SAM 3's tracker on video against transformers' ``Sam3TrackerVideoModel``: a random model saved with
``save_pretrained``, loaded by sam_core, and a 12-frame clip tracked by both from a click, a box (a second object)
and a correction click; the masks equal transformers'.

What is aligned on purpose (none of it the model): transformers' session gets sam_core's preprocessed frames; its
low-res masks are brought to the video's size with one bilinear resize, as Meta's predictor does; a correction
click gets the frame's previous mask logits as the decoder's mask input, as Meta's predictor does and
transformers' session never does; and transformers' memory encoder is made to resize the mask after the
binarisation / sigmoid and scaling, as Meta's does (``hf_memory_in_meta_order``: transformers resizes the logits
first). transformers neither fills holes nor forgets the frames around a new prompt, so sam_core's predictor runs
with those two of SAM 3's tracker settings off. Tolerance on the logits: 2e-3 (bfloat16 memories).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sam_core import VideoPredictor, load_checkpoint
from sam_core.io.video_frames import VideoFrames
from sam_core.models.sam2.parity import hf_previous_mask_as_meta
from sam_core.models.sam3 import SAM3_CONFIGS
from sam_core.models.sam3.hf_format import sam3_config_from_hf
from sam_core.models.sam3.model import SAM3_INPUT_STATISTICS
from sam_core.models.sam3.parity import hf_memory_in_meta_order, make_hf_sam3_tracker_video
from sam_core.models.sam3.video import SAM3_TRACKER_SETTINGS, Sam3Video

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models; the machine's cores may be busy

transformers = pytest.importorskip("transformers")

# transformers' memory cross-attention reads 64-channel memories and its memory encoder always ends in a
# projection (Meta's only when mem_dim differs from d_model): d_model 128, mem_dim 64. At 112 pixels (an 8 x 8
# grid in windows of 6, padded) every path of the test model runs.
CONFIG = dataclasses.replace(SAM3_CONFIGS["sam3_test"], image_size=112, d_model=128, mem_dim=64)
HEIGHT, WIDTH, NUM_FRAMES = 72, 96, 12
TOL = 2e-3


class Prompt(NamedTuple):
    frame: int
    object_id: int
    points: list | None = None
    labels: list | None = None
    box: list | None = None


class Propagate(NamedTuple):
    start: int | None = None


# A click on object 1, a box on object 2 from frame 3, tracking; then a negative correction click on frame 6
# (tracked, not prompted) and tracking on from frame 7, from the corrected memory.
STEPS = [Prompt(0, 1, [[20, 25]], [1]), Prompt(3, 2, box=[50, 20, 90, 60]), Propagate(),
         Prompt(6, 1, [[45, 30]], [0]), Propagate(7)]


def draw_clip(folder: Path) -> Path:
    """A rectangle moving right and an ellipse moving down over smooth noise, as <index>.jpg frames."""
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, size=(HEIGHT // 8, WIDTH // 8, 3)).astype(np.uint8)
    background = np.asarray(Image.fromarray(background).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR))
    ys, xs = np.mgrid[:HEIGHT, :WIDTH]
    folder.mkdir(parents=True)
    for t in range(NUM_FRAMES):
        frame = background.copy()
        frame[15:40, 8 + 3 * t:33 + 3 * t] = (220, 40, 40)
        frame[((xs - 70) / 14.0) ** 2 + ((ys - (25 + 2 * t)) / 10.0) ** 2 <= 1] = (40, 200, 60)
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return folder


def run_hf(model: torch.nn.Module, frames: torch.Tensor) -> list:
    size = {"height": CONFIG.image_size, "width": CONFIG.image_size}
    processor = transformers.Sam3TrackerVideoProcessor(transformers.Sam2ImageProcessor(size=size),
                                                       transformers.Sam2VideoVideoProcessor(size=size),
                                                       target_size=CONFIG.image_size)
    session = transformers.Sam3TrackerVideoInferenceSession(video=frames, video_height=HEIGHT, video_width=WIDTH,
                                                            dtype=torch.float32)
    outputs = []

    def keep(label: str, output) -> None:
        masks = F.interpolate(output.pred_masks.float(), size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
        outputs.append((label, list(output.object_ids), masks))

    hf_previous_mask_as_meta(model)
    hf_memory_in_meta_order(model)
    try:
        with torch.inference_mode():
            for index, step in enumerate(STEPS):
                if isinstance(step, Prompt):
                    frame, object_id, points, labels, box = step
                    processor.add_inputs_to_inference_session(
                        session, frame_idx=frame, obj_ids=object_id,
                        input_points=None if points is None else [[points]],
                        input_labels=None if labels is None else [[labels]],
                        input_boxes=None if box is None else [[box]])
                    keep(f"{index} prompt {frame} {object_id}", model(inference_session=session, frame_idx=frame))
                else:
                    for output in model.propagate_in_video_iterator(session, start_frame_idx=step.start):
                        keep(f"{index} propagate {step.start} {output.frame_idx}", output)
    finally:
        del model._run_single_frame_inference, model._encode_new_memory  # back to the class's methods
    return outputs


def run_ours(predictor: VideoPredictor, clip: Path) -> list:
    state = predictor.init_state(str(clip))
    outputs = []
    for index, step in enumerate(STEPS):
        if isinstance(step, Prompt):
            _, obj_ids, masks = predictor.add_new_points_or_box(state, step.frame, step.object_id, points=step.points,
                                                                labels=step.labels, box=step.box)
            outputs.append((f"{index} prompt {step.frame} {step.object_id}", list(obj_ids), masks))
        else:
            for frame, obj_ids, masks in predictor.propagate_in_video(state, start_frame_idx=step.start):
                outputs.append((f"{index} propagate {step.start} {frame}", list(obj_ids), masks))
    return outputs


@pytest.fixture(scope="module")
def hf_model_and_folder(tmp_path_factory):
    hf_model = make_hf_sam3_tracker_video(CONFIG)
    folder = tmp_path_factory.mktemp("sam3") / "hf"
    hf_model.save_pretrained(folder)
    return hf_model, folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return draw_clip(tmp_path_factory.mktemp("sam3") / "clip")


def test_tracking_matches_sam3_tracker_video_model(hf_model_and_folder, clip):
    hf_model, folder = hf_model_and_folder
    loaded = load_checkpoint(folder)
    assert loaded.model.config == CONFIG  # the video settings too, from config.json
    # The hub's facebook/sam3 is a whole Sam3VideoModel: its config.json nests the tracker's.
    assert sam3_config_from_hf({"tracker_config": json.loads((folder / "config.json").read_text())}) == CONFIG
    ours = Sam3Video.from_image_model(loaded.model, loaded.extras)
    reader = VideoFrames(clip, CONFIG.image_size, *SAM3_INPUT_STATISTICS)
    expected = run_hf(hf_model, torch.stack([reader[index] for index in range(len(reader))]))
    settings = {**SAM3_TRACKER_SETTINGS, "clear_non_cond_mem_around_input": False}
    actual = run_ours(VideoPredictor(ours, **settings), clip)
    assert [label for label, _, _ in actual] == [label for label, _, _ in expected]
    worst, differing = 0.0, 0
    for (label, obj_ids, masks), (_, hf_ids, hf_masks) in zip(actual, expected):
        assert obj_ids == hf_ids, label
        if " prompt " in label:  # transformers also tracks the other objects on a prompted frame
            index = obj_ids.index(int(label.split()[3]))
            masks, hf_masks = masks[index:index + 1], hf_masks[index:index + 1]
        diff = (masks - hf_masks).abs().max().item()
        worst = max(worst, diff)
        assert diff <= TOL, f"{label}: max logit difference {diff}"
        flipped = (masks > 0) != (hf_masks > 0)
        differing += int(flipped.sum())
        assert (hf_masks[flipped].abs() <= TOL).all(), label  # only logits within the tolerance of 0 flip
    # Nothing trivial: each object present on some pixels and absent on others.
    assert all(((m > 0).any() and (m <= 0).any()) for _, _, m in expected)
    print(f"SAM 3 video: max |logit difference| {worst:.2e} over {len(actual)} outputs, {differing} mask pixels "
          "differ")


def test_sam_video_tracks_with_a_sam3_checkpoint(hf_model_and_folder, clip, tmp_path):
    """``sam-video --model <Sam3TrackerVideoModel folder>``: SAM 3's tracker settings, a mask on every frame."""
    from sam_core.cli.video import load_video_predictor, main

    folder = str(hf_model_and_folder[1])
    predictor = load_video_predictor(folder)
    assert isinstance(predictor.model, Sam3Video)
    assert (predictor.fill_hole_area, predictor.clear_non_cond_mem_around_input) == (0, True)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"frame": 0, "object": 1, "points": [[20, 25]], "labels": [1]}]))
    assert main(["--model", folder, "--video", str(clip), "--prompts", str(prompts), "--output",
                 str(tmp_path / "out")]) == 0
    assert sorted(path.parent.name for path in (tmp_path / "out").rglob("1.png")) == [
        f"{index:05d}" for index in range(NUM_FRAMES)]

"""Parity of sam_core's SAM 2 video predictor with Meta's ``SAM2VideoPredictor`` (``sam2==1.1.0``).

Meta's predictor is built from its own classes with the tiny test config (``sam2_hiera_test``: SAM 2.1, and
the same with SAM 2.0's video settings), every tensor randomised, the object-score head forced to say
"present" (else every mask is empty), saved as Meta saves checkpoints and loaded with sam_core's builder.
Both run the same prompts on the same clip (moving shapes saved as JPEG frames, which both decode with
PIL) and every returned mask (logits at video resolution, every object, every frame) is compared.

Meta's predictor needs two patches to compute on a CPU what it computes on a GPU (see
``sam_core.models.sam2.parity.reference_video_on_cpu``): hole filling through scipy instead of its CUDA
extension, and the float32 cast of the bfloat16 memory that its concatenation with object pointers does
whenever there is a pointer (without one, e.g. for an object prompted on a later frame, it fails on CPU).

Tolerance on the logits: 2e-3 (the memories are stored in bfloat16 on both sides).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam_core import SAM2_CONFIGS, Sam2Video, VideoPredictor, build_sam2_video_predictor
from sam_core.models.sam2.config import as_sam2_0
from sam_core.models.sam2.parity import make_reference_video_predictor, reference_video_on_cpu, save_reference_pt

TOL = 2e-3
TEST_CONFIG = SAM2_CONFIGS["sam2_hiera_test"]
# The test model at 128 x 128 (an 8 x 8 memory grid): every code path, a quarter of the work.
VIDEO_CONFIG = dataclasses.replace(TEST_CONFIG, image_size=128)
NUM_FRAMES, HEIGHT, WIDTH = 8, 96, 128
# Measured differences, printed at the end of the module (pytest -s) for the report.
MEASURED: dict[str, float] = {}


def draw_clip(folder: Path) -> Path:
    """A rectangle moving right and an ellipse moving down over smooth noise, as <index>.jpg frames."""
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, size=(HEIGHT // 8, WIDTH // 8, 3)).astype(np.uint8)
    background = np.asarray(Image.fromarray(background).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR))
    ys, xs = np.mgrid[:HEIGHT, :WIDTH]
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(NUM_FRAMES):
        frame = background.copy()
        x0 = 10 + 6 * t
        frame[20:50, x0:x0 + 30] = (220, 40, 40)
        inside = ((xs - 90) / 18.0) ** 2 + ((ys - (30 + 5 * t)) / 12.0) ** 2 <= 1
        frame[inside] = (40, 200, 60)
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return folder


# A scenario calls the predictor's API; every returned mask tensor is collected, in order.
Scenario = Callable[[object, dict, list], None]


def _propagate(predictor, state, outputs, **kwargs) -> None:
    for frame_idx, obj_ids, masks in predictor.propagate_in_video(state, **kwargs):
        outputs.append((f"propagate {kwargs} frame {frame_idx}", list(obj_ids), masks))


def _prompt(outputs, label, result) -> None:
    frame_idx, obj_ids, masks = result
    outputs.append((f"{label} frame {frame_idx}", list(obj_ids), masks))


def first_frame_click(predictor, state, outputs) -> None:
    _prompt(outputs, "click", predictor.add_new_points_or_box(state, 0, 1, points=[[30, 35]], labels=[1]))
    _propagate(predictor, state, outputs)


def two_objects_one_on_a_later_frame(predictor, state, outputs) -> None:
    """Object 2 is prompted on frame 3 and tracked backwards: no pointer yet on frames 0-2."""
    _prompt(outputs, "box", predictor.add_new_points_or_box(state, 0, 1, box=[8, 18, 42, 52]))
    _prompt(outputs, "points", predictor.add_new_points_or_box(state, 3, 2, points=[[90, 45], [30, 80]],
                                                               labels=[1, 0]))
    _propagate(predictor, state, outputs)
    _propagate(predictor, state, outputs, start_frame_idx=3, reverse=True)


def correction_click_mid_video(predictor, state, outputs) -> None:
    _prompt(outputs, "click", predictor.add_new_points_or_box(state, 0, 1, points=[[90, 30]], labels=[1]))
    _propagate(predictor, state, outputs)
    # Frame 4 is already tracked: the click corrects it (a non-conditioning frame) on top of the old mask.
    _prompt(outputs, "correction", predictor.add_new_points_or_box(state, 4, 1, points=[[60, 40]], labels=[0],
                                                                   clear_old_points=False))
    _propagate(predictor, state, outputs, start_frame_idx=2, max_frame_num_to_track=4)


def mask_prompt_and_reverse(predictor, state, outputs) -> None:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[20:50, 40:70] = True
    _prompt(outputs, "mask", predictor.add_new_mask(state, 5, 1, mask))
    _prompt(outputs, "box+click", predictor.add_new_points_or_box(state, 5, 2, points=[[95, 60]], labels=[1],
                                                                  box=[70, 40, 110, 80]))
    _propagate(predictor, state, outputs, reverse=True)
    _propagate(predictor, state, outputs)


def edits(predictor, state, outputs) -> None:
    """Clearing a frame's prompts and removing an object, then tracking what is left."""
    _prompt(outputs, "a", predictor.add_new_points_or_box(state, 1, "a", points=[[30, 35]], labels=[1]))
    _prompt(outputs, "b", predictor.add_new_points_or_box(state, 1, "b", points=[[90, 35]], labels=[1]))
    _prompt(outputs, "c", predictor.add_new_points_or_box(state, 2, "c", points=[[60, 70]], labels=[1]))
    _propagate(predictor, state, outputs)
    _prompt(outputs, "clear", predictor.clear_all_prompts_in_frame(state, 2, "c"))
    # Frame 2 is no longer tracked for "c": a new prompt there is a new conditioning frame.
    _prompt(outputs, "c again", predictor.add_new_points_or_box(state, 2, "c", points=[[70, 75]], labels=[1]))
    obj_ids, updated = predictor.remove_object(state, "a")
    for frame_idx, masks in updated:
        outputs.append((f"remove a frame {frame_idx}", list(obj_ids), masks))
    _propagate(predictor, state, outputs)


SCENARIOS = {scenario.__name__: scenario for scenario in (
    first_frame_click, two_objects_one_on_a_later_frame, correction_click_mid_video, mask_prompt_and_reverse,
    edits)}
VERSIONS = {"sam2.1": VIDEO_CONFIG, "sam2.0": as_sam2_0(VIDEO_CONFIG)}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return draw_clip(tmp_path_factory.mktemp("clip") / "frames")


@pytest.fixture(scope="module", params=list(VERSIONS))
def predictors(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(Meta's predictor, ours loaded from its .pt) for one SAM version."""
    config = VERSIONS[request.param]
    reference = make_reference_video_predictor(config, seed=1)
    path = save_reference_pt(reference, tmp_path_factory.mktemp("ckpt") / f"{request.param}_hiera_test.pt")
    ours = build_sam2_video_predictor(config, path)
    return request.param, reference, ours


def run(predictor, clip: Path, scenario: Scenario) -> list:
    outputs: list = []
    state = predictor.init_state(str(clip))
    scenario(predictor, state, outputs)
    return outputs


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_video_predictor_matches_meta(predictors, clip, name):
    version, reference, ours = predictors
    with reference_video_on_cpu(reference):
        expected = run(reference, clip, SCENARIOS[name])
    actual = run(ours, clip, SCENARIOS[name])
    assert [label for label, _, _ in actual] == [label for label, _, _ in expected]
    worst = 0.0
    for (label, obj_ids, masks), (_, obj_ids_ref, masks_ref) in zip(actual, expected):
        assert obj_ids == obj_ids_ref, label
        assert masks.shape == masks_ref.shape == (len(obj_ids), 1, HEIGHT, WIDTH), label
        # The masks are not trivial: each object is present somewhere and absent elsewhere.
        diff = (masks - masks_ref).abs().max().item()
        worst = max(worst, diff)
        assert diff <= TOL, f"{label}: max logit difference {diff}"
        assert torch.equal(masks > 0, masks_ref > 0) or diff <= TOL, label
    assert any(((m > 0).any() and (m <= 0).any()) for _, _, m in expected)
    MEASURED[f"{version} {name}"] = worst
    print(f"max |logit difference| {version} {name}: {worst:.2e}")


def test_loaded_model_is_the_checkpoint(predictors):
    """Every tensor of Meta's file is in the video model, under the same name, with the same value."""
    _, reference, ours = predictors
    assert isinstance(ours, VideoPredictor) and isinstance(ours.model, Sam2Video)
    expected, actual = reference.state_dict(), ours.model.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)


def test_sam2_0_lacks_the_2_1_tensors(predictors):
    version, _, ours = predictors
    names = set(ours.model.state_dict())
    assert ({"no_obj_embed_spatial", "obj_ptr_tpos_proj.weight"} <= names) == (version == "sam2.1")


def test_report_measured_differences():
    """Runs last in this module: print the worst difference per scenario (for the report)."""
    for key, value in sorted(MEASURED.items()):
        print(f"max |logit difference| {key}: {value:.2e}")


def test_official_video_configs_have_meta_values():
    from omegaconf import OmegaConf
    from sam2 import __path__ as sam2_path

    base_defaults = {"max_obj_ptrs_in_encoder": 16, "memory_temporal_stride_for_eval": 1, "max_cond_frames_in_attn": -1,
                     "soft_no_obj_ptr": False, "non_overlap_masks_for_mem_enc": False, "no_obj_embed_spatial": False,
                     "proj_tpos_enc_in_obj_ptrs": False, "use_signed_tpos_enc_to_obj_ptrs": False}
    for version in ("sam2", "sam2.1"):
        for short, size in {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}.items():
            model = OmegaConf.load(Path(sam2_path[0]) / "configs" / version / f"{version}_hiera_{short}.yaml").model
            config = SAM2_CONFIGS[f"{version}_hiera_{size}"]
            for field in ("num_maskmem", "sigmoid_scale_for_mem_enc", "sigmoid_bias_for_mem_enc",
                          "use_mask_input_as_output_without_sam", "multimask_output_in_sam",
                          "multimask_output_for_tracking", "multimask_min_pt_num", "multimask_max_pt_num",
                          "use_obj_ptrs_in_encoder", "use_mlp_for_obj_ptr_proj", "only_obj_ptrs_in_the_past_for_eval",
                          "fixed_no_obj_ptr", "add_tpos_enc_to_obj_ptrs", *base_defaults):
                wanted = model[field] if field in model else base_defaults[field]
                assert getattr(config, field) == wanted, (version, size, field)
            layer = model.memory_attention.layer
            assert config.memory_attention_layers == model.memory_attention.num_layers
            assert config.memory_attention_mlp_dim == layer.dim_feedforward
            assert config.memory_attention_heads == layer.self_attention.num_heads == layer.cross_attention.num_heads
            assert config.rope_theta == layer.self_attention.rope_theta
            assert config.mem_dim == model.memory_encoder.out_dim == layer.cross_attention.kv_in_dim


def test_video_config_validation():
    with pytest.raises(ValueError) as error:
        dataclasses.replace(TEST_CONFIG, mem_dim=24, memory_attention_heads=3, max_cond_frames_in_attn=1,
                            add_tpos_enc_to_obj_ptrs=False)
    message = str(error.value)
    for problem in ("mem_dim 24", "memory_attention_heads 3", "max_cond_frames_in_attn 1", "proj_tpos_enc_in_obj_ptrs"):
        assert problem in message


# --------------------------------------------------------------------------------------------- bounded memory

def test_tracked_outputs_and_frames_stay_bounded(tmp_path):
    """Over a clip longer than the memory's reach, only the outputs some later frame can read are kept: those
    within reach of the frame being tracked or of a prompted frame. Decoded frames are cached a few at a time."""
    torch.manual_seed(0)
    predictor = build_sam2_video_predictor(VIDEO_CONFIG)
    folder = tmp_path / "long"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for t in range(60):
        Image.fromarray(rng.integers(0, 255, size=(32, 48, 3), dtype=np.uint8)).save(folder / f"{t}.jpg")
    state = predictor.init_state(str(folder))
    predictor.add_new_points_or_box(state, 10, 1, points=[[20, 20]], labels=[1])
    reach = predictor.reach
    assert reach == 15  # the 16 object pointers of the official configs reach farthest
    seen = []
    for frame_idx, _, _ in predictor.propagate_in_video(state):
        kept = set(state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
        assert all(abs(t - frame_idx) <= reach or abs(t - 10) <= reach for t in kept), (frame_idx, kept)
        assert len(state["images"]._cache) <= state["images"].cache_size
        seen.append(frame_idx)
    assert seen == list(range(10, 60))
    kept = set(state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
    assert kept == set(range(11, 26)) | set(range(59 - reach, 60))  # 44..59: the last frame's reach
    # Reverse from the prompted frame reads the forward pass's frames after it (kept: within reach of it).
    assert [t for t, _, _ in predictor.propagate_in_video(state, reverse=True)] == list(range(10, -1, -1))


def test_video_file_gives_the_frames_of_the_folder(clip, predictors, tmp_path):
    """A lossless video file of the decoded JPEG frames (read with OpenCV) tracks exactly as the folder."""
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10, (WIDTH, HEIGHT))
    for t in range(NUM_FRAMES):
        with Image.open(clip / f"{t:05d}.jpg") as image:
            writer.write(cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR))
    writer.release()
    _, _, ours = predictors
    from_folder = run(ours, clip, correction_click_mid_video)
    from_file = run(ours, path, correction_click_mid_video)
    assert len(from_file) == len(from_folder)
    for (label, _, masks), (_, _, expected) in zip(from_file, from_folder):
        assert torch.equal(masks, expected), label


@torch.no_grad()
def test_absent_object_matches_meta(tmp_path):
    """The object-score head forced to say "absent": suppressed masks, the no-object pointer, and (SAM 2.1)
    the no-object embedding added to the memory, as Meta's heads and memory encoder compute them."""
    reference = make_reference_video_predictor(VIDEO_CONFIG, seed=3, object_score_bias=-20.0)
    ours = build_sam2_video_predictor(VIDEO_CONFIG, save_reference_pt(reference, tmp_path / "absent.pt")).model
    generator = torch.Generator().manual_seed(3)
    grid, channels = VIDEO_CONFIG.embedding_size, VIDEO_CONFIG.d_model
    pix_feat = torch.randn(1, channels, grid, grid, generator=generator)
    high_res = [torch.randn(1, channels // 8, 4 * grid, 4 * grid, generator=generator),
                torch.randn(1, channels // 4, 2 * grid, 2 * grid, generator=generator)]
    points = {"point_coords": torch.tensor([[[40.0, 50.0]]]), "point_labels": torch.tensor([[1]], dtype=torch.int32)}
    for multimask in (True, False):
        expected = reference._forward_sam_heads(pix_feat, points, None, high_res, multimask)
        decoded = ours.decode_frame(pix_feat, high_res, points, None, multimask)
        assert (expected[6] < 0).all() and (decoded.low_res_masks == -1024).all()
        for actual, wanted in ((decoded.low_res_masks, expected[3]), (decoded.high_res_masks, expected[4]),
                               (decoded.obj_ptr, expected[5]), (decoded.object_score_logits, expected[6])):
            assert (actual - wanted).abs().max().item() <= 1e-4
    masks = torch.randn(1, 1, VIDEO_CONFIG.image_size, VIDEO_CONFIG.image_size, generator=generator)
    for binarize in (True, False):
        reference.binarize_mask_from_pts_for_mem_enc = binarize
        memory_ref, _ = reference._encode_new_memory([pix_feat.flatten(2).permute(2, 0, 1)], [(grid, grid)], masks,
                                                     expected[6], is_mask_from_pts=True)
        memory = ours.encode_memory(pix_feat, masks, expected[6], binarize=binarize)
        assert (memory - memory_ref).abs().max().item() <= 1e-4
        assert (memory - ours.encode_memory(pix_feat, masks, -expected[6], binarize=binarize)).abs().max() > 1e-3

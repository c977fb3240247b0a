"""sam_core.compat.ssseg against sssegmentation 1.7.0 itself, on identical random weights.

Each family's reference model is built from a small config in sssegmentation's format, every tensor is
randomised (zero-initialised relative-position tables and position embeddings included), the weights are saved
in sssegmentation's file format and loaded by both sides through ``ckptpath``. Outputs must match: masks
exactly (but for a pixel whose logit is within 1e-4 of the threshold, where float noise picks the side),
scores and logits to 1e-4, generator records field by field. EdgeSAM (RepViT, BatchNorm statistics random
too) gets its prompt encoder's Gaussian matrix at SAM's own scale and its hypernetworks' last layers scaled up,
so that masks depend on where the prompt is and logits cross +-1 (stability scores not all 0); its tests run
torch on one thread, which the small convolutions prefer on busy cores.
The reference runs on the CPU here with
two stand-ins for what it only does on a GPU: its SAM 2 connected-components CUDA extension (replaced by
OpenCV's) and its unconditional ``.cuda()`` calls in video tracking (made no-ops).
"""

from __future__ import annotations

import copy
import http.server
import socket
import threading
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import ssseg.modules.models.segmentors.sam as ssseg_sam
import torch
from ssseg.modules.models.backbones.edgesamrepvit import EdgeSAMRepViT  # noqa: E402
from ssseg.modules.models.segmentors.edgesam import EdgeSAMAutomaticMaskGenerator as RefEdgeSAMGenerator  # noqa: E402
from ssseg.modules.models.segmentors.edgesam import EdgeSAMPredictor as RefEdgeSAMPredictor  # noqa: E402
from ssseg.modules.models.segmentors.mobilesam import MobileSAMPredictor as RefMobileSAMPredictor  # noqa: E402
from ssseg.modules.models.segmentors.samhq import SAMHQAutomaticMaskGenerator as RefSAMHQGenerator  # noqa: E402
from ssseg.modules.models.segmentors.samhq import SAMHQPredictor as RefSAMHQPredictor  # noqa: E402
from ssseg.modules.models.segmentors.samv2 import misc as ref_samv2_misc  # noqa: E402
from ssseg.modules.models.segmentors.samv2 import samv2 as ref_samv2  # noqa: E402

import sam_core.compat.ssseg.weights as weights  # noqa: E402
from sam_core.compat import ssseg as compat  # noqa: E402
from sam_core.compat.ssseg.config import REP_VIT_ARCHS  # noqa: E402
from sam_core.errors import CheckpointError  # noqa: E402
from sam_core.models.edge_sam import EDGE_SAM_CONFIGS  # noqa: E402
from sam_core.models.edge_sam.parity import rep_vit_arch  # noqa: E402
from sam_core.models.sam.parity import randomize_every_tensor_  # noqa: E402

TOL = 1e-4
LN = {"type": "LayerNorm", "eps": 1e-6}
THRESHOLDS_OFF = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)
TUTORIAL_OPTIONS = dict(points_per_side=32, pred_iou_thresh=0.86, stability_score_thresh=0.92, crop_n_layers=1,
                        crop_n_points_downscale_factor=2, min_mask_region_area=100)


def sam_cfg(hq: bool = False) -> dict[str, Any]:
    """A small SAM (ViT: windowed blocks with padding, global blocks) in sssegmentation's format."""
    cfg = {
        "backbone": {"type": "SAMViT", "img_size": 256, "patch_size": 16, "embed_dim": 64, "depth": 4,
                     "num_heads": 2, "mlp_ratio": 4, "norm_cfg": LN, "qkv_bias": True, "use_rel_pos": True,
                     "global_attn_indexes": [1, 3], "window_size": 6, "out_chans": 64},
        "prompt": {"embed_dim": 64, "image_embedding_size": (16, 16), "input_image_size": (256, 256),
                   "mask_in_chans": 16},
        "head": {"num_multimask_outputs": 3, "transformer_dim": 64, "iou_head_depth": 3, "iou_head_hidden_dim": 64,
                 "transformer_cfg": {"depth": 2, "embedding_dim": 64, "mlp_dim": 128, "num_heads": 8}},
    }
    if hq:
        cfg["head"]["vit_dim"] = 64
    return cfg


def mobile_sam_cfg() -> dict[str, Any]:
    """A small TinyViT (sssegmentation's hard-wires 1024 pixels, a 256-wide neck, and keeps the last stage's
    resolution only for a last width of 320, 448 or 576)."""
    return {
        "backbone": {"type": "MobileSAMTinyViT", "structure_type": "tiny", "img_size": 1024, "in_chans": 3,
                     "embed_dims": [16, 32, 32, 320], "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 2],
                     "window_sizes": [7, 7, 14, 7], "mlp_ratio": 2.0, "drop_path_rate": 0.0,
                     "mbconv_expand_ratio": 2.0, "local_conv_size": 3},
        "prompt": {"embed_dim": 256, "image_embedding_size": (64, 64), "input_image_size": (1024, 1024),
                   "mask_in_chans": 16},
        "head": {"num_multimask_outputs": 3, "transformer_dim": 256, "iou_head_depth": 3, "iou_head_hidden_dim": 32,
                 "transformer_cfg": {"depth": 1, "embedding_dim": 256, "mlp_dim": 64, "num_heads": 8}},
    }


def samv2_cfg() -> dict[str, Any]:
    """sam_core's ``sam2_hiera_test`` shapes (SAM 2.0 video settings) in sssegmentation's format; the decoder's
    widths are hard-wired there (MLP 2048, IoU head 256)."""
    sine = {"type": "PositionEmbeddingSine", "normalize": True, "scale": None, "temperature": 10000}
    rope = {"type": "RoPEAttention", "rope_theta": 10000.0, "feat_sizes": [16, 16], "embedding_dim": 64, "num_heads": 2,
            "downsample_rate": 1, "dropout": 0.1}
    return {
        "backbone": {"type": "HieraWithFPN", "scalp": 1.0,
                     "hiera_cfg": {"embed_dim": 16, "num_heads": 2, "stages": [1, 2, 3, 3], "global_att_blocks": [4, 8],
                                   "window_pos_embed_bkg_spatial_size": [7, 7], "window_spec": [8, 4, 6, 3]},
                     "fpn_cfg": {"d_model": 64, "backbone_channel_list": [128, 64, 32, 16],
                                 "fpn_top_down_levels": [2, 3], "fpn_interp_model": "nearest",
                                 "position_encoding_cfg": {**sine, "num_pos_feats": 64}}},
        "head": {
            "memory_attention_cfg": {"d_model": 64, "pos_enc_at_input": True, "num_layers": 2, "layer_cfg": {
                "act_cfg": {"type": "ReLU"}, "dim_feedforward": 128, "dropout": 0.1, "pos_enc_at_attn": False,
                "d_model": 64, "pos_enc_at_cross_attn_keys": True, "pos_enc_at_cross_attn_queries": False,
                "self_attention_cfg": rope, "cross_attention_cfg": {**rope, "rope_k_repeat": True, "kv_in_dim": 16}}},
            "memory_encoder_cfg": {
                "out_dim": 16, "in_dim": 64, "position_encoding_cfg": {**sine, "num_pos_feats": 16},
                "mask_downsampler_cfg": {"embed_dim": 64, "kernel_size": 3, "stride": 2, "padding": 1},
                "fuser_cfg": {"num_layers": 2, "layer_cfg": {"dim": 64, "kernel_size": 7, "padding": 3,
                                                             "layer_scale_init_value": 1e-6, "use_dwconv": True}}},
            "num_maskmem": 7, "image_size": 256, "backbone_stride": 16, "sigmoid_scale_for_mem_enc": 20.0,
            "sigmoid_bias_for_mem_enc": -10.0, "binarize_mask_from_pts_for_mem_enc": False,
            "use_mask_input_as_output_without_sam": True, "max_cond_frames_in_attn": -1,
            "directly_add_no_mem_embed": True, "use_high_res_features_in_sam": True, "multimask_output_in_sam": True,
            "multimask_min_pt_num": 0, "multimask_max_pt_num": 1, "multimask_output_for_tracking": True,
            "use_multimask_token_for_obj_ptr": True, "iou_prediction_use_sigmoid": True,
            "memory_temporal_stride_for_eval": 1, "add_all_frames_to_correct_as_cond": False,
            "non_overlap_masks_for_mem_enc": False, "use_obj_ptrs_in_encoder": True, "max_obj_ptrs_in_encoder": 16,
            "add_tpos_enc_to_obj_ptrs": False, "proj_tpos_enc_in_obj_ptrs": False,
            "only_obj_ptrs_in_the_past_for_eval": True, "pred_obj_scores": True, "pred_obj_scores_mlp": True,
            "fixed_no_obj_ptr": True, "soft_no_obj_ptr": False, "use_mlp_for_obj_ptr_proj": True,
            "sam_mask_decoder_extra_args": None, "compile_image_encoder": False,
        },
    }


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Every floating tensor random (norm weights around 1), so that zero-initialised ones count too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator) * 0.1
                if name.endswith("running_var"):
                    noise = noise.abs()  # a variance
                tensor.copy_(noise + (1.0 if name.endswith(("norm.weight", "running_var")) or "norm" in name
                                      and name.endswith("weight") else 0.0))


def with_ckpt(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    return {**copy.deepcopy(cfg), "ckptpath": str(path)}


def image(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth random colours: masks of random weights then have some structure."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def assert_prediction_equal(ref: tuple, ours: tuple, logits: bool = False,
                            ref_mask_logits: Any = None) -> dict[str, float]:
    """Same types, dtypes and shapes; masks equal, scores and logits to TOL. With ``ref_mask_logits`` (the
    reference's upscaled logits of boolean masks), a mask pixel may differ where that logit is within TOL of
    the threshold: float noise decides its side."""
    diffs = {}
    for name, a, b in zip(("masks", "scores", "low_res"), ref, ours):
        assert type(a) is type(b), (name, type(a), type(b))
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
        b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else b
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, b.dtype, a.shape, b.shape)
        if a.dtype == bool or (name == "masks" and not logits):
            differ = a != b
            if ref_mask_logits is not None:
                near = np.abs(np.asarray(torch.as_tensor(ref_mask_logits).cpu())) <= TOL
                differ &= ~near
                diffs["flipped_at_threshold"] = float((a != b).sum())
            assert not differ.any(), f"{name}: {differ.sum()} values differ"
        else:
            diffs[name] = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
            assert diffs[name] <= TOL, (name, diffs[name])
    return diffs


def reference_records(generator: Any, picture: np.ndarray, **kwargs: Any) -> list[dict[str, Any]]:
    """The reference's records; [] where it fails because no mask survived a run with crops (it then takes the
    box area of an empty crop-box list, as Meta's generator does)."""
    try:
        return generator.generate(picture, **kwargs)
    except IndexError:
        if generator.crop_n_layers == 0:
            raise
        return []


def assert_records_equal(ref: list[dict[str, Any]], ours: list[dict[str, Any]]) -> None:
    assert len(ref) == len(ours)
    for a, b in zip(ref, ours):
        assert set(a) == set(b)
        assert (np.asarray(a["segmentation"]) == np.asarray(b["segmentation"])).all()
        for key in ("area", "bbox", "point_coords", "crop_box"):
            assert a[key] == b[key], key
        for key in ("predicted_iou", "stability_score"):
            assert abs(a[key] - b[key]) <= TOL, key


@pytest.fixture(scope="module")
def sam_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = tmp_path_factory.mktemp("ssseg") / "sam.pth"
    ref = ssseg_sam.SAMPredictor(sam_cfg(), device="cpu")
    randomise(ref.model, 1)
    torch.save(ref.model.state_dict(), path)
    return ssseg_sam.SAMPredictor(with_ckpt(sam_cfg(), path), device="cpu"), \
        compat.SAMPredictor(with_ckpt(sam_cfg(), path), device="cpu")


@pytest.fixture(scope="module")
def hq_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = tmp_path_factory.mktemp("ssseg") / "samhq.pth"
    ref = RefSAMHQPredictor(sam_cfg(hq=True), device="cpu")
    randomise(ref.model, 2)
    torch.save(ref.model.state_dict(), path)
    return RefSAMHQPredictor(with_ckpt(sam_cfg(hq=True), path), device="cpu"), \
        compat.SAMHQPredictor(with_ckpt(sam_cfg(hq=True), path), device="cpu")


@pytest.fixture(scope="module")
def mobile_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = tmp_path_factory.mktemp("ssseg") / "mobilesam.pth"
    ref = RefMobileSAMPredictor(mobile_sam_cfg(), device="cpu")
    randomise(ref.model, 3)
    torch.save(ref.model.state_dict(), path)
    return RefMobileSAMPredictor(with_ckpt(mobile_sam_cfg(), path), device="cpu"), \
        compat.MobileSAMPredictor(with_ckpt(mobile_sam_cfg(), path), device="cpu")


PROMPTS = [
    dict(point_coords=np.array([[40, 30]]), point_labels=np.array([1])),
    dict(point_coords=np.array([[40, 30], [90, 70]]), point_labels=np.array([1, 0]), multimask_output=False),
    dict(box=np.array([10, 15, 100, 80])),
    dict(box=np.array([10, 15, 100, 80]), point_coords=np.array([[60, 50]]), point_labels=np.array([0]),
         multimask_output=False),
]


@pytest.mark.parametrize("family", ["sam", "hq", "mobile"])
def test_predictor_matches_ssseg(family: str, request: pytest.FixtureRequest) -> None:
    ref, ours = request.getfixturevalue(f"{family}_pair")
    picture = image()
    ref.setimage(picture)
    ours.setimage(picture)
    assert (ref.getimageembedding() - ours.getimageembedding()).abs().max() <= TOL
    assert ours.original_size == tuple(ref.original_size) and ours.input_size == ref.input_size
    for index, prompt in enumerate(PROMPTS):  # every prompt kind, each output kind, on few calls (slow CPUs)
        options = {"return_logits": index % 2 == 1, **({"hq_token_only": index > 1} if family == "hq" else {})}
        assert_prediction_equal(ref.predict(**prompt, **options), ours.predict(**prompt, **options),
                                options["return_logits"])
    # mask_input: an earlier call's best logits.
    _, scores, logits = ref.predict(**PROMPTS[0])
    refine = dict(PROMPTS[1], mask_input=logits[np.argmax(scores)][None])
    assert_prediction_equal(ref.predict(**refine), ours.predict(**refine))
    # Batched torch prompts in the resized frame.
    boxes = torch.tensor([[10, 15, 100, 80], [0, 0, 60, 90]], dtype=torch.float)
    points = torch.tensor([[[40, 30]], [[20, 60]]], dtype=torch.float)
    for transform in (ref.transform, ours.transform):
        assert np.allclose(transform.applyboxes(boxes.numpy(), picture.shape[:2]),
                           ours.transform.applyboxestorch(boxes, picture.shape[:2]).numpy())
    tboxes = ours.transform.applyboxestorch(boxes, picture.shape[:2])
    tpoints = ours.transform.applycoordstorch(points, picture.shape[:2])
    labels = torch.ones(2, 1, dtype=torch.int)
    for args in ((None, None, tboxes), (tpoints, labels, None), (tpoints, labels, tboxes)):
        assert_prediction_equal(ref.predicttorch(*args, multimask_output=False),
                                ours.predicttorch(*args, multimask_output=False))
    # settorchimage, then reset.
    resized = torch.as_tensor(ours.transform.applyimage(picture)).permute(2, 0, 1)[None]
    ref.settorchimage(resized, picture.shape[:2])
    ours.settorchimage(resized, picture.shape[:2])
    assert_prediction_equal(ref.predict(**PROMPTS[2]), ours.predict(**PROMPTS[2]))
    ours.resetimage()
    with pytest.raises(RuntimeError):
        ours.predict(**PROMPTS[0])


@pytest.mark.parametrize("family", ["sam", "hq", "mobile"])
def test_model_inference_matches_ssseg(family: str, request: pytest.FixtureRequest) -> None:
    ref, ours = request.getfixturevalue(f"{family}_pair")
    assert ours.model.image_encoder.img_size == ref.model.image_encoder.img_size
    assert ours.model.device == ref.model.device
    pictures = [image(96, 128, 0), image(80, 64, 1)]
    batch = []
    for index, picture in enumerate(pictures):
        resized = torch.as_tensor(ours.transform.applyimage(picture)).permute(2, 0, 1).contiguous()
        boxes = ours.transform.applyboxestorch(torch.tensor([[5, 5, 50, 60], [20, 10, 60, 70]]), picture.shape[:2])
        record = {"image": resized, "original_size": picture.shape[:2], "boxes": boxes}
        if index:
            record["point_coords"] = ours.transform.applycoordstorch(torch.tensor([[[30, 30]], [[10, 40]]]),
                                                                     picture.shape[:2])
            record["point_labels"] = torch.ones(2, 1, dtype=torch.int)
        batch.append(record)
    for multimask in (False, True) if family == "sam" else (False,):
        for a, b in zip(ref.model.inference(batch, multimask_output=multimask),
                        ours.model.inference(batch, multimask_output=multimask)):
            assert_prediction_equal((a["masks"], a["iou_predictions"], a["low_res_logits"]),
                                    (b["masks"], b["iou_predictions"], b["low_res_logits"]))


def test_generators_match_ssseg(sam_pair: tuple[Any, Any], hq_pair: tuple[Any, Any],
                                mobile_pair: tuple[Any, Any]) -> None:
    picture = image(48, 64, 2)
    ref, ours = sam_pair
    # The tutorial's options with 16 points a side instead of 32: the reference is slow on two shared cores.
    tutorial = dict(TUTORIAL_OPTIONS, points_per_side=16)
    for options in (dict(points_per_side=8, **THRESHOLDS_OFF), dict(points_per_side=4, output_mode="coco_rle",
                                                                   **THRESHOLDS_OFF), tutorial):
        expected = reference_records(ssseg_sam.SAMAutomaticMaskGenerator(**options, user_defined_sam_predictor=ref),
                                     picture)
        got = compat.SAMAutomaticMaskGenerator(**options, user_defined_sam_predictor=ours).generate(picture)
        assert_records_equal(expected, got)
        if options.get("pred_iou_thresh") == 0:
            assert expected
    ref, ours = mobile_pair
    expected = ssseg_sam.SAMAutomaticMaskGenerator(points_per_side=4, **THRESHOLDS_OFF,
                                                   user_defined_sam_predictor=ref).generate(picture)
    got = compat.SAMAutomaticMaskGenerator(points_per_side=4, **THRESHOLDS_OFF,
                                           user_defined_sam_predictor=ours).generate(picture)
    assert expected and assert_records_equal(expected, got) is None


def test_hq_generator_matches_ssseg(tmp_path: Path, hq_pair: tuple[Any, Any]) -> None:
    ref, _ = hq_pair
    path = tmp_path / "samhq.pth"
    torch.save(ref.model.state_dict(), path)
    cfg = with_ckpt(sam_cfg(hq=True), path)
    picture = image(48, 64, 3)
    expected_gen = RefSAMHQGenerator(points_per_side=6, **THRESHOLDS_OFF, sam_cfg=copy.deepcopy(cfg), device="cpu")
    ours_gen = compat.SAMHQAutomaticMaskGenerator(points_per_side=6, **THRESHOLDS_OFF, sam_cfg=copy.deepcopy(cfg),
                                                  device="cpu")
    for hq_token_only in (False, True):
        expected = expected_gen.generate(picture, hq_token_only=hq_token_only)
        assert expected
        assert_records_equal(expected, ours_gen.generate(picture, hq_token_only=hq_token_only))


# ------------------------------------------------------------------------------------------------- SAM 2

def _components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A CPU stand-in for sssegmentation's CUDA connected components: per pixel, its 8-connected component's
    label and area (0 outside), for (N, 1, H, W) masks."""
    flat = mask.to(torch.uint8).cpu().numpy().reshape(-1, *mask.shape[-2:])
    labels, areas = np.zeros(flat.shape, np.int32), np.zeros(flat.shape, np.int32)
    for index, plane in enumerate(flat):
        _, plane_labels, stats, _ = cv2.connectedComponentsWithStats(plane, connectivity=8)
        labels[index] = plane_labels
        areas[index] = np.where(plane_labels > 0, stats[plane_labels, cv2.CC_STAT_AREA], 0)
    return torch.from_numpy(labels).reshape(mask.shape), torch.from_numpy(areas).reshape(mask.shape)


@pytest.fixture()
def cpu_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ref_samv2_misc, "getconnectedcomponents", _components)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda tensor, *args, **kwargs: tensor)


@pytest.fixture(scope="module")
def samv2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ssseg") / "samv2.pt"
    ref = ref_samv2.SAMV2ImagePredictor(samv2_cfg(), device="cpu")
    randomise(ref.model, 4)
    torch.save({"model": ref.model.state_dict()}, path)
    return path


def ref_samv2_predictor(cls: type, path: Path, **kwargs: Any) -> Any:
    predictor = cls(samv2_cfg=with_ckpt(samv2_cfg(), path), device="cpu", **kwargs)
    predictor._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]  # sssegmentation hard-wires 1024-pixel models
    return predictor


@pytest.mark.parametrize("apply_postprocessing", [True, False])
def test_samv2_image_predictor_matches_ssseg(samv2_path: Path, cpu_reference: None, apply_postprocessing: bool) -> None:
    kwargs = dict(apply_postprocessing=apply_postprocessing, max_hole_area=4.0, max_sprinkle_area=4.0)
    ref = ref_samv2_predictor(ref_samv2.SAMV2ImagePredictor, samv2_path, **kwargs)
    ours = compat.SAMV2ImagePredictor(samv2_cfg=with_ckpt(samv2_cfg(), samv2_path), device="cpu", **kwargs)
    assert ours.model.image_size == ref.model.image_size
    pictures = [image(96, 128, 5), image(64, 80, 6)]
    ref.setimage(pictures[0])
    ours.setimage(pictures[0])
    assert (ref.getimageembedding() - ours.getimageembedding()).abs().max() <= TOL
    prompts = PROMPTS + [dict(point_coords=np.array([[[40, 30]], [[20, 50]]]), point_labels=np.array([[1], [1]])),
                         dict(box=np.array([[10, 15, 100, 80], [0, 0, 50, 50]]), multimask_output=False),
                         dict(point_coords=np.array([[0.3, 0.4]]), point_labels=np.array([1]), normalize_coords=False)]
    for index, prompt in enumerate(prompts):
        assert_prediction_equal(ref.predict(**prompt, return_logits=index % 2 == 1),
                                ours.predict(**prompt, return_logits=index % 2 == 1), logits=True)
    ref.setimagebatch(pictures)
    ours.setimagebatch(pictures)
    batch = dict(point_coords_batch=[np.array([[40, 30]]), np.array([[20, 20]])],
                 point_labels_batch=[np.array([1]), np.array([1])], box_batch=[None, np.array([5, 5, 60, 50])])
    for a, b in zip(zip(*ref.predictbatch(**batch)), zip(*ours.predictbatch(**batch))):
        assert_prediction_equal(a, b, logits=True)


def test_samv2_generator_matches_ssseg(samv2_path: Path, cpu_reference: None) -> None:
    picture = image(48, 64, 7)
    # The tutorial's thresholds and crops on fewer points: the reference's SAM 2 generator is slow on a CPU.
    tutorial = dict(TUTORIAL_OPTIONS, points_per_side=8)
    for options in (dict(points_per_side=6, **THRESHOLDS_OFF), dict(points_per_side=4, use_m2m=True, **THRESHOLDS_OFF),
                    tutorial):
        ref = ref_samv2.SAMV2AutomaticMaskGenerator(**options, samv2_cfg=with_ckpt(samv2_cfg(), samv2_path),
                                                    use_default_samv2_l=False, device="cpu")
        ref.predictor._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]
        ours = compat.SAMV2AutomaticMaskGenerator(**options, samv2_cfg=with_ckpt(samv2_cfg(), samv2_path),
                                                  device="cpu")
        expected = reference_records(ref, picture)
        assert expected or options is tutorial
        assert_records_equal(expected, ours.generate(picture))


def write_frames(folder: Path, count: int = 4) -> Path:
    folder.mkdir()
    for index in range(count):
        frame = np.roll(image(64, 80, 8), 3 * index, axis=1)
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), frame[:, :, ::-1])
    return folder


def test_samv2_video_predictor_matches_ssseg(samv2_path: Path, cpu_reference: None, tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames")
    ref = ref_samv2_predictor(ref_samv2.SAMV2VideoPredictor, samv2_path)
    ours = compat.SAMV2VideoPredictor(samv2_cfg=with_ckpt(samv2_cfg(), samv2_path), device="cpu")
    ref_state = ref.initstate(str(frames), offload_video_to_cpu=True, offload_state_to_cpu=True)
    state = ours.initstate(str(frames))
    mask = np.zeros((64, 80), bool)
    mask[10:40, 20:60] = True
    for method, args in (("addnewpoints", (0, 1, np.array([[30, 20]]), np.array([1]))),
                         ("addnewpoints", (2, 1, np.array([[40, 30], [10, 10]]), np.array([1, 0]))),
                         ("addnewmask", (1, 2, mask))):
        a, b = getattr(ref, method)(ref_state, *args), getattr(ours, method)(state, *args)
        assert a[0] == b[0] and list(a[1]) == list(b[1])
        assert (a[2] - b[2]).abs().max() <= TOL
    for (ref_index, ref_ids, ref_masks), (index, ids, masks) in zip(ref.propagateinvideo(ref_state),
                                                                    ours.propagateinvideo(state), strict=True):
        assert ref_index == index and list(ref_ids) == list(ids)
        assert ref_masks.shape == masks.shape and ref_masks.dtype == masks.dtype
        assert (ref_masks - masks).abs().max() <= TOL
    ours.resetstate(state)
    assert state["obj_ids"] == []


# ------------------------------------------------------------------------------------------------- EdgeSAM

def edge_sam_cfg(stability_score_offset: float | None = None) -> dict[str, Any]:
    """RepViT-M1 (sssegmentation's EdgeSAMRepViT only builds its named block tables) at 256 pixels, with a
    narrow decoder, in sssegmentation's format."""
    cfg: dict[str, Any] = {
        "backbone": {"type": "EdgeSAMRepViT", "structure_type": "repvit_m1", "arch": "m1", "img_size": 256,
                     "upsample_mode": "bicubic"},
        "prompt": {"embed_dim": 256, "image_embedding_size": (16, 16), "input_image_size": (256, 256),
                   "mask_in_chans": 16},
        "head": {"num_multimask_outputs": 3, "transformer_dim": 256, "iou_head_depth": 3, "iou_head_hidden_dim": 32,
                 "transformer_cfg": {"depth": 2, "embedding_dim": 256, "mlp_dim": 64, "num_heads": 8}},
    }
    if stability_score_offset is not None:
        cfg["stability_score_offset"] = stability_score_offset
    return cfg


@pytest.fixture(scope="module")
def edge_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sssegmentation's EdgeSAM with every tensor random (BatchNorm statistics included), saved as its file."""
    path = tmp_path_factory.mktemp("ssseg") / "edgesam.pth"
    ref = RefEdgeSAMPredictor(edge_sam_cfg(), device="cpu")
    randomize_every_tensor_(ref.model, 5)
    with torch.no_grad():
        matrix = ref.model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
        matrix.mul_(matrix.shape[1] ** 0.5)  # N(0, 1), as SAM initialises it
        for name, tensor in ref.model.mask_decoder.output_hypernetworks_mlps.named_parameters():
            if name.endswith("layers.2.weight"):  # logits of a few units, crossing the stability thresholds
                tensor.mul_(10.0)
    torch.save(ref.model.state_dict(), path)
    return path


@pytest.fixture()
def one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def edge_pair(edge_path: Path) -> tuple[Any, Any]:
    return RefEdgeSAMPredictor(with_ckpt(edge_sam_cfg(), edge_path), device="cpu"), \
        compat.EdgeSAMPredictor(with_ckpt(edge_sam_cfg(), edge_path), device="cpu")


EDGE_PROMPTS = [
    dict(point_coords=np.array([[40, 30]]), point_labels=np.array([1])),
    dict(point_coords=np.array([[40, 30], [90, 70]]), point_labels=np.array([1, 0])),
    dict(box=np.array([10, 15, 100, 80])),
    dict(box=np.array([10, 15, 100, 80]), point_coords=np.array([[60, 50]]), point_labels=np.array([0])),
]


def assert_edge_call_equal(ref: Any, ours: Any, method: str, *args: Any, **options: Any) -> dict[str, float]:
    """One ``predict`` / ``predicttorch`` call on both sides; boolean masks are checked against the reference's
    logits (see ``assert_prediction_equal``)."""
    expected = getattr(ref, method)(*args, **options)
    logits = options.get("return_logits", False)
    ref_logits = None if logits else getattr(ref, method)(*args, **{**options, "return_logits": True})[0]
    return assert_prediction_equal(expected, getattr(ours, method)(*args, **options), logits, ref_logits)


@pytest.mark.usefixtures("one_thread")
def test_edge_sam_predictor_matches_ssseg(edge_pair: tuple[Any, Any]) -> None:
    ref, ours = edge_pair
    assert ours.stability_score_offset == ref.stability_score_offset == 1.0
    picture = image()
    ref.setimage(picture)
    ours.setimage(picture)
    assert (ref.getimageembedding() - ours.getimageembedding()).abs().max() <= TOL
    assert ours.original_size == tuple(ref.original_size) and ours.input_size == ref.input_size
    # mask_input: an earlier call's best logits.
    _, scores, logits = ref.predict(**EDGE_PROMPTS[0])
    prompts = [*EDGE_PROMPTS, dict(EDGE_PROMPTS[1], mask_input=logits[np.argmax(scores)][None])]
    stable = []
    for index, prompt in enumerate(prompts):
        assert_edge_call_equal(ref, ours, "predict", **prompt)  # the defaults: 3 outputs, the IoU head's scores
        for outputs in (1, 3, 4):
            for stability in (False, True):
                options = dict(num_multimask_outputs=outputs, use_stability_score=stability,
                               return_logits=(index + outputs) % 2 == 1)
                assert_edge_call_equal(ref, ours, "predict", **prompt, **options)
                if stability:
                    stable.extend(ref.predict(**prompt, **options)[1])
    assert 0 < np.mean(stable) < 1  # stability scores that tell masks apart
    # Batched torch prompts in the resized frame; predicttorch scores by stability unless told otherwise.
    tboxes = ours.transform.applyboxestorch(torch.tensor([[10, 15, 100, 80], [0, 0, 60, 90]]), picture.shape[:2])
    tpoints = ours.transform.applycoordstorch(torch.tensor([[[40, 30]], [[20, 60]]]), picture.shape[:2])
    labels = torch.ones(2, 1, dtype=torch.int)
    for args in ((None, None, tboxes), (tpoints, labels, None), (tpoints, labels, tboxes)):
        assert_edge_call_equal(ref, ours, "predicttorch", *args)
        assert not torch.equal(ref.predicttorch(*args)[1], ref.predicttorch(*args, use_stability_score=False)[1])
        assert_edge_call_equal(ref, ours, "predicttorch", *args, use_stability_score=False)
        for outputs in (1, 4):
            assert_edge_call_equal(ref, ours, "predicttorch", *args, num_multimask_outputs=outputs, return_logits=True)
    # settorchimage, then reset.
    resized = torch.as_tensor(ours.transform.applyimage(picture)).permute(2, 0, 1)[None]
    ref.settorchimage(resized, picture.shape[:2])
    ours.settorchimage(resized, picture.shape[:2])
    assert_edge_call_equal(ref, ours, "predict", **EDGE_PROMPTS[2], num_multimask_outputs=4)
    ours.resetimage()
    with pytest.raises(RuntimeError):
        ours.predict(**EDGE_PROMPTS[0])
    ours.setimage(picture)
    with pytest.raises(ValueError, match="1, 3 or 4"):
        ours.predict(**EDGE_PROMPTS[0], num_multimask_outputs=2)


@pytest.mark.usefixtures("one_thread")
def test_edge_sam_model_inference_matches_ssseg(edge_pair: tuple[Any, Any]) -> None:
    ref, ours = edge_pair
    assert ours.model.image_encoder.img_size == ref.model.image_encoder.img_size
    assert ours.model.mask_threshold == ref.model.mask_threshold
    batch = []
    for index, picture in enumerate([image(96, 128, 0), image(80, 64, 1)]):
        resized = torch.as_tensor(ours.transform.applyimage(picture)).permute(2, 0, 1).contiguous()
        record = {"image": resized, "original_size": picture.shape[:2],
                  "boxes": ours.transform.applyboxestorch(torch.tensor([[5, 5, 50, 60], [20, 10, 60, 70]]),
                                                          picture.shape[:2])}
        if index:
            record["point_coords"] = ours.transform.applycoordstorch(torch.tensor([[[30, 30]], [[10, 40]]]),
                                                                     picture.shape[:2])
            record["point_labels"] = torch.ones(2, 1, dtype=torch.int)
        batch.append(record)
    for options in ({}, dict(num_multimask_outputs=4, use_stability_score=True), dict(num_multimask_outputs=3)):
        outputs = zip(ref.model.inference(batch, **options), ours.model.inference(batch, **options), strict=True)
        for record, (a, b) in zip(batch, outputs):
            assert a.keys() == b.keys()
            mask_logits = ref.model.postprocessmasks(a["low_res_logits"], record["image"].shape[-2:],
                                                     record["original_size"])
            assert_prediction_equal((a["masks"], a["iou_predictions"], a["low_res_logits"]),
                                    (b["masks"], b["iou_predictions"], b["low_res_logits"]),
                                    ref_mask_logits=mask_logits)


@pytest.mark.usefixtures("one_thread")
def test_edge_sam_generator_matches_ssseg(edge_path: Path) -> None:
    picture = image(96, 128, 2)
    # The tutorial's options on 8 points a side; sam_cfg's stability_score_offset (predicted_iou) varied too.
    cases = [(dict(points_per_side=6, **THRESHOLDS_OFF), None),
             (dict(points_per_side=4, output_mode="coco_rle", stability_score_offset=0.5, **THRESHOLDS_OFF), 2.0),
             (dict(TUTORIAL_OPTIONS, points_per_side=8), 0.25)]
    for options, offset in cases:
        cfg = with_ckpt(edge_sam_cfg(offset), edge_path)
        ref = RefEdgeSAMGenerator(**options, sam_cfg=copy.deepcopy(cfg), device="cpu")
        ours = compat.EdgeSAMAutomaticMaskGenerator(**options, sam_cfg=copy.deepcopy(cfg), device="cpu")
        assert ours.predictor.stability_score_offset == ref.predictor.stability_score_offset
        expected = reference_records(ref, picture)
        assert expected
        assert_records_equal(expected, ours.generate(picture))


@pytest.mark.usefixtures("one_thread")
def test_edge_sam_configs_are_ssseg_s(edge_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sssegmentation's block tables, defaults and flag files."""
    for arch, config in REP_VIT_ARCHS.items():  # HS (column 4) picks GELU either way
        ours = [row[:4] + row[5:] for row in rep_vit_arch(config)]
        assert ours == [row[:4] + row[5:] for row in EdgeSAMRepViT.arch_settings[arch]], arch
    assert compat.EdgeSAMPredictor(device="cpu").model.config == EDGE_SAM_CONFIGS["edge_sam"]

    class Loaded(Exception):
        pass

    def load_url(url: str, *args: Any, **kwargs: Any) -> None:
        raise Loaded(url)

    monkeypatch.setattr(torch.utils.model_zoo, "load_url", load_url)
    for flag in ("use_default_edgesam", "use_default_edgesam_3x"):
        with pytest.raises(Loaded) as loaded:
            RefEdgeSAMPredictor(**{flag: True}, device="cpu")
        assert weights.SSSEG_CHECKPOINT_URLS[flag] == str(loaded.value)
        assert compat.EdgeSAMPredictor.FLAGS[flag] == EDGE_SAM_CONFIGS["edge_sam"]
    # A flag loads its file into its config (here the test model's, from a local path).
    small = compat.EdgeSAMPredictor(with_ckpt(edge_sam_cfg(), edge_path), device="cpu")
    monkeypatch.setitem(compat.EdgeSAMPredictor.FLAGS, "use_default_edgesam_3x", small.model.config)
    monkeypatch.setitem(weights.SSSEG_CHECKPOINT_URLS, "use_default_edgesam_3x", str(edge_path))
    flagged = compat.EdgeSAMPredictor(use_default_edgesam_3x=True, device="cpu")
    state = small.model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in flagged.model.state_dict().items())


def test_edge_sam_bad_configs_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="use_default_edgesam"):
        compat.EdgeSAMPredictor(use_default_edgesam=True, use_default_edgesam_3x=True, device="cpu")
    with pytest.raises(ValueError, match="use_default_edgesam"):
        compat.EdgeSAMAutomaticMaskGenerator(use_default_edgesam=True, use_default_edgesam_3x=True, device="cpu")
    with pytest.raises(ValueError, match="not both"):
        compat.EdgeSAMPredictor(edge_sam_cfg(), use_default_edgesam=True, device="cpu")
    for section, key, value, match in (
            ("backbone", "depth", 12, "depth"), ("backbone", "arch", "m4", "arch"),
            ("backbone", "upsample_mode", "nearest", "upsample_mode"), ("backbone", "img_size", 250, "img_size"),
            ("backbone", "pretrained", True, "pretrained"), ("backbone", "type", "SAMViT", "EdgeSAMRepViT"),
            ("head", "num_multimask_outputs", 2, "num_multimask_outputs"), ("prompt", "embed_dim", 128, "embed_dim"),
            (None, "stability_score_offset", "1", "stability_score_offset"), (None, "arch", "m1", "arch")):
        cfg = edge_sam_cfg()
        (cfg[section] if section else cfg)[key] = value
        with pytest.raises(ValueError, match=match):
            compat.EdgeSAMPredictor(cfg, device="cpu")
    with pytest.raises(ValueError, match="EdgeSAMPredictor|EdgeSAM"):
        compat.SAMPredictor(edge_sam_cfg(), device="cpu")


# ------------------------------------------------------------------------------------------ config errors

def test_bad_configs_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="use_default_sam_h"):
        compat.SAMPredictor(use_default_sam_h=True, use_default_sam_b=True, device="cpu")
    with pytest.raises(ValueError, match="not both"):
        compat.SAMPredictor(sam_cfg(), use_default_sam_b=True, device="cpu")
    with pytest.raises(ValueError, match="give sam_cfg"):
        compat.SAMPredictor(device="cpu")
    wrong_nesting = sam_cfg()
    wrong_nesting["depth"] = wrong_nesting["backbone"].pop("depth")
    with pytest.raises(ValueError, match="depth"):
        compat.SAMPredictor(wrong_nesting, device="cpu")
    for section, key, value in (("backbone", "qkv_bias", False), ("backbone", "use_rel_pos", False),
                                ("backbone", "norm_cfg", {"type": "BatchNorm2d"}), ("backbone", "out_chans", 32),
                                (None, "pixel_mean", [0, 0, 0])):
        cfg = sam_cfg()
        (cfg[section] if section else cfg)[key] = value
        with pytest.raises(ValueError, match=key if key != "out_chans" else "embed_dim"):
            compat.SAMPredictor(cfg, device="cpu")
    with pytest.raises(ValueError, match="vit_dim"):
        compat.SAMHQPredictor({**sam_cfg(), "head": {**sam_cfg(hq=True)["head"], "vit_dim": 32}}, device="cpu")
    with pytest.raises(ValueError, match="neither an existing file"):
        compat.SAMPredictor(with_ckpt(sam_cfg(), Path("no/such/file.pth")), device="cpu")
    with pytest.raises(ValueError, match="use_default_samv2"):
        compat.SAMV2ImagePredictor(use_default_samv2_t=True, use_default_samv2_s=True, device="cpu")
    bad = samv2_cfg()
    bad["head"]["memory_encoder_cfg"]["fuser_cfg"]["num_layers"] = 3
    with pytest.raises(ValueError, match="num_layers"):
        compat.SAMV2ImagePredictor(bad, device="cpu")


def test_cuda_default_falls_back_to_cpu_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, wherever this runs
    with pytest.warns(UserWarning, match="CUDA is not available"):
        predictor = compat.SAMPredictor(sam_cfg())
    assert predictor.device.type == "cpu"


# --------------------------------------------------------------------------------------------- downloads

class _Server:
    """An HTTP server on 127.0.0.1 serving one file, honouring Range requests, recording what it was asked."""

    def __init__(self, payload: bytes) -> None:
        requests: list[str | None] = []
        self.requests = requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                requests.append(self.headers.get("Range"))
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                body = payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_default_flag_downloads_once_resumes_and_reports(sam_pair: tuple[Any, Any], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ref, ours = sam_pair
    weights_file = tmp_path / "weights.pth"
    torch.save(ref.model.state_dict(), weights_file)
    payload = weights_file.read_bytes()
    server = _Server(payload)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAM_CORE_CACHE", str(cache))
    monkeypatch.delenv("SAM_CORE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # The flag's file is the small test model here.
    monkeypatch.setitem(compat.SAMPredictor.FLAGS, "use_default_sam_b", ours.model.config)
    monkeypatch.setitem(weights.SSSEG_CHECKPOINT_URLS, "use_default_sam_b", f"{server.url}/tiny_sam.pth")
    picture = image()
    ours.setimage(picture)
    expected = ours.predict(**PROMPTS[0])
    try:
        first = compat.SAMPredictor(use_default_sam_b=True, device="cpu")
        assert server.requests == [None] and (cache / "tiny_sam.pth").read_bytes() == payload
        assert not list(cache.glob("*.part"))
        second = compat.SAMPredictor(use_default_sam_b=True, device="cpu")
        assert len(server.requests) == 1  # from the cache
        for predictor in (first, second):
            predictor.setimage(picture)
            assert_prediction_equal(expected, predictor.predict(**PROMPTS[0]))
        # An interrupted download resumes where it stopped.
        (cache / "tiny_sam.pth").unlink()
        (cache / "tiny_sam.pth.part").write_bytes(payload[: len(payload) // 2])
        compat.SAMPredictor(use_default_sam_b=True, device="cpu")
        assert server.requests[-1] == f"bytes={len(payload) // 2}-"
        assert (cache / "tiny_sam.pth").read_bytes() == payload
        # A file whose sha256 sam_core knows (Meta's) is checked against it, and deleted when it differs.
        monkeypatch.setitem(weights.SSSEG_CHECKPOINT_URLS, "use_default_sam_b", f"{server.url}/sam_vit_b_01ec64.pth")
        with pytest.raises(CheckpointError, match="sha256 mismatch"):
            compat.SAMPredictor(use_default_sam_b=True, device="cpu")
        assert not (cache / "sam_vit_b_01ec64.pth").exists() and not list(cache.glob("*.part"))
    finally:
        server.close()
    # No server: one error naming the file and where to put it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setitem(weights.SSSEG_CHECKPOINT_URLS, "use_default_sam_b", f"http://127.0.0.1:{closed_port}/x.pth")
    with pytest.raises(CheckpointError, match=r"could not download x\.pth .*put it at .*cache.x\.pth"):
        compat.SAMPredictor(use_default_sam_b=True, device="cpu")
    monkeypatch.setenv("SAM_CORE_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="offline"):
        compat.SAMPredictor(use_default_sam_b=True, device="cpu")


def test_visualisation_helpers_draw() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.showmask(np.ones((4, 5), bool), ax)
        compat.showpoints(np.array([[1, 2], [3, 1]]), np.array([1, 0]), ax)
        compat.showbox(np.array([0, 0, 3, 2]), ax)
        compat.showanns([{"segmentation": np.eye(4, 5, dtype=bool), "area": 4}])
    assert len(ax.images) == 2 and len(ax.patches) == 1 and len(ax.collections) == 2
    plt.close(figure)


# ---------------------------------------------------------------------------------------------- tutorial

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "ssseg_tutorial.ipynb"
COMPAT_IMPORT = "from sam_core.compat.ssseg import"
SSSEG_IMPORTS = """\
from ssseg.modules.models.segmentors.sam import SAMAutomaticMaskGenerator, SAMPredictor
from ssseg.modules.models.segmentors.sam.transforms import ResizeLongestSide
from ssseg.modules.models.segmentors.sam.visualization import showanns, showbox, showmask, showpoints
"""


def run_tutorial(import_cell: str | None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The notebook's code cells in one namespace, with its import cell replaced by ``import_cell``."""
    import matplotlib
    import nbformat

    matplotlib.use("Agg")
    monkeypatch.chdir(NOTEBOOK.parent)
    namespace: dict[str, Any] = {}
    for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
        if cell.cell_type == "code":
            source = import_cell if import_cell and cell.source.startswith(COMPAT_IMPORT) else cell.source
            exec(compile(source, str(NOTEBOOK), "exec"), namespace)  # noqa: S102 (the repository's own notebook)
    return namespace


def test_tutorial_numbers_equal_sssegmentations(monkeypatch: pytest.MonkeyPatch) -> None:
    ours = run_tutorial(None, monkeypatch)
    assert COMPAT_IMPORT in NOTEBOOK.read_text()
    reference = run_tutorial(SSSEG_IMPORTS, monkeypatch)
    assert type(reference["predictor"]).__module__.startswith("ssseg")
    for names in (("masks", "scores", "logits"), ("masks_two", "scores_two"), ("masks_bg", "scores_bg"),
                  ("masks_box", "scores_box"), ("masks_box_point", "scores_box_point"),
                  ("batch_masks", "batch_scores")):
        assert_prediction_equal(tuple(reference[name] for name in names), tuple(ours[name] for name in names))
    for a, b in zip(reference["batched_output"], ours["batched_output"], strict=True):
        assert_prediction_equal((a["masks"], a["iou_predictions"], a["low_res_logits"]),
                                (b["masks"], b["iou_predictions"], b["low_res_logits"]))
    assert reference["anns"] and reference["anns_2"]
    assert_records_equal(reference["anns"], ours["anns"])
    assert_records_equal(reference["anns_2"], ours["anns_2"])

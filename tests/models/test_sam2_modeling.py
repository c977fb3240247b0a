"""Numerical parity of the SAM 2 image model with Meta's reference (`sam2==1.1.0`) on identical random weights.

The reference is built from its own SAM 2.1 Hydra config with the test sizes, every tensor randomised, saved
as Meta saves checkpoints (``{"model": state_dict}``) and loaded with ``load_sam2``. Tolerance: max abs
difference <= 1e-4 (fp32), on the tiny test config and on the full-size Hiera-T at 1024x1024.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch

from sam_core.errors import CheckpointError
from sam_core.io.checkpoints import load_sam2
from sam_core.models.sam2 import OFFICIAL_SAM2_MODELS, SAM2_CONFIGS, Sam2Config, build_sam2_model
from sam_core.models.sam2.checkpoint import VIDEO_MODULES, recognise_official_model, split_state_dict
from sam_core.models.sam2.config import image_settings
from sam_core.models.sam2.parity import (
    make_hf_sam2,
    make_reference_sam2,
    reference_decode,
    reference_image_features,
    save_reference_pt,
)

TOL = 1e-4
TEST_CONFIG = SAM2_CONFIGS["sam2_hiera_test"]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def random_images(size: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Normalised-looking input images."""
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """(reference, ours loaded from the reference's .pt, video-only tensors)."""
    reference = make_reference_sam2(TEST_CONFIG, seed=0)
    path = save_reference_pt(reference, tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_test.pt")
    ours, video = load_sam2(path, config="sam2_hiera_test")
    return reference, ours, video


@pytest.fixture(scope="module")
def tiny_features(tiny):
    reference, ours, _ = tiny
    images = random_images(256)
    with torch.no_grad():
        return reference_image_features(reference, images), ours.encode_image(images)


# ------------------------------------------------------------------------------------------------- config

def _yaml_model(name: str):
    from omegaconf import OmegaConf
    from sam2 import __path__ as sam2_path

    version, size = name.split("_hiera_")
    short = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}[size]
    return OmegaConf.load(Path(sam2_path[0]) / "configs" / version / f"{version}_hiera_{short}.yaml").model


@pytest.mark.parametrize("name", OFFICIAL_SAM2_MODELS)
def test_official_configs_have_meta_values(name):
    from sam2.modeling.backbones.hieradet import Hiera

    model = _yaml_model(name)
    trunk_defaults = {k: p.default for k, p in inspect.signature(Hiera.__init__).parameters.items()}
    trunk = {**trunk_defaults, **model.image_encoder.trunk}
    neck = model.image_encoder.neck
    config = SAM2_CONFIGS[name]
    assert (config.embed_dim, config.num_heads) == (trunk["embed_dim"], trunk["num_heads"])
    assert config.stages == tuple(trunk["stages"])
    assert config.q_pool == trunk["q_pool"] and (config.q_stride,) * 2 == tuple(trunk["q_stride"])
    assert config.window_spec == tuple(trunk["window_spec"])
    assert config.global_att_blocks == tuple(trunk["global_att_blocks"])
    assert config.window_pos_embed_bkg_spatial_size == tuple(trunk["window_pos_embed_bkg_spatial_size"])
    assert config.d_model == neck.d_model == neck.position_encoding.num_pos_feats
    assert config.backbone_channel_list == tuple(neck.backbone_channel_list)
    assert config.fpn_top_down_levels == tuple(neck.fpn_top_down_levels)
    assert config.fpn_interp_mode == neck.fpn_interp_model and config.scalp == model.image_encoder.scalp
    assert config.image_size == model.image_size
    assert config.use_high_res_features == model.use_high_res_features_in_sam
    for field in ("iou_prediction_use_sigmoid", "pred_obj_scores", "pred_obj_scores_mlp",
                  "use_multimask_token_for_obj_ptr", "directly_add_no_mem_embed"):
        assert getattr(config, field) == model[field], field


def test_config_is_frozen_validated_and_round_trips():
    config = SAM2_CONFIGS["sam2.1_hiera_large"]
    assert Sam2Config.from_dict(config.to_dict()) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.embed_dim = 8  # type: ignore[misc]
    with pytest.raises(ValueError) as error:
        Sam2Config(image_size=1000, window_spec=(8, 4, 14), global_att_blocks=(1, 40), d_model=100)
    message = str(error.value)
    for problem in ("image_size 1000", "window_spec", "d_model 100"):
        assert problem in message
    with pytest.raises(ValueError, match="block 1 pools its queries and cannot be global"):
        Sam2Config(global_att_blocks=(1,))
    with pytest.raises(ValueError, match="unknown Sam2Config fields"):
        Sam2Config.from_dict({"embed_dims": 3})


# ------------------------------------------------------------------------------------------- image encoder

@torch.no_grad()
def test_image_encoder_matches_reference(tiny):
    reference, ours, _ = tiny
    images = random_images(256, batch=2, seed=1)
    expected = reference.image_encoder(images)
    features = ours.image_encoder(images)
    assert [f.shape[-1] for f in features] == [64, 32, 16]
    for actual, wanted in zip(features, expected["backbone_fpn"]):
        assert max_diff(actual, wanted) <= TOL
    for actual, wanted in zip(ours.image_encoder.position_encodings(features), expected["vision_pos_enc"]):
        assert max_diff(actual, wanted) <= TOL


def test_encode_image_matches_predictor_features(tiny_features):
    (embed_ref, high_res_ref), (embed, high_res) = tiny_features
    assert embed.shape == (1, 64, 16, 16)
    assert [f.shape for f in high_res] == [(1, 8, 64, 64), (1, 16, 32, 32)]
    assert max_diff(embed, embed_ref) <= TOL
    for actual, wanted in zip(high_res, high_res_ref):
        assert max_diff(actual, wanted) <= TOL


@torch.no_grad()
def test_full_size_hiera_tiny_at_1024_from_meta_checkpoint(tmp_path):
    """Official Hiera-T shapes at 1024x1024: the .pt loads without a config (recognised from the shapes)."""
    reference = make_reference_sam2(SAM2_CONFIGS["sam2.1_hiera_tiny"], seed=5)
    path = save_reference_pt(reference, tmp_path / "sam2.1_hiera_tiny_random.pt")
    ours, video = load_sam2(path)
    assert ours.config == SAM2_CONFIGS["sam2.1_hiera_tiny"]
    assert video.keys() == split_state_dict(reference.state_dict())[1].keys()
    images = random_images(1024, seed=5)
    expected = reference.image_encoder(images)
    features = ours.image_encoder(images)
    for actual, wanted in zip(features, expected["backbone_fpn"]):
        assert max_diff(actual, wanted) <= TOL
    for actual, wanted in zip(ours.image_encoder.position_encodings(features), expected["vision_pos_enc"]):
        assert max_diff(actual, wanted) <= TOL
    embed_ref, high_res_ref = reference_image_features(reference, images)
    embed, high_res = ours.encode_image(images)
    assert max_diff(embed, embed_ref) <= TOL
    for actual, wanted in zip(high_res, high_res_ref):
        assert max_diff(actual, wanted) <= TOL
    prompts = dict(point_coords=torch.tensor([[[300.0, 500.0], [700.0, 420.0]]]), point_labels=torch.tensor([[1, 0]]),
                   boxes=torch.tensor([[100.0, 200.0, 800.0, 900.0]]))
    masks, iou, scores = ours.predict_masks(embed, high_res, **prompts)
    masks_ref, iou_ref, _, scores_ref = reference_decode(reference, embed_ref, high_res_ref, **prompts)
    assert masks.shape == (1, 3, 256, 256)
    assert max_diff(masks, masks_ref) <= TOL and max_diff(iou, iou_ref) <= TOL
    assert max_diff(scores, scores_ref) <= TOL


# -------------------------------------------------------------------------------------- prompts and decoder

def prompt_cases(image_size: int = 256, mask_size: int = 64) -> dict[str, dict]:
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(3, 4, 2, generator=generator) * image_size
    boxes = torch.sort(torch.rand(3, 2, 2, generator=generator) * image_size, dim=1).values.reshape(3, 4)
    masks = torch.randn(3, 1, mask_size, mask_size, generator=generator)
    positive = torch.ones(3, 1, dtype=torch.int64)
    with_negative = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 0], [0, 1, 1, 1]])
    return {
        "point": dict(point_coords=points[:, :1], point_labels=positive),
        "points_with_negatives": dict(point_coords=points, point_labels=with_negative),
        "padded_points": dict(point_coords=points, point_labels=torch.tensor([[1, 0, -1, -1]] * 3)),
        "box": dict(boxes=boxes),
        "box_and_points": dict(boxes=boxes, point_coords=points[:, :2], point_labels=with_negative[:, :2]),
        "mask_input": dict(point_coords=points[:, :1], point_labels=positive, mask_input=masks),
        "one_prompt_set": dict(point_coords=points[:1, :3], point_labels=with_negative[:1, :3]),
    }


@pytest.mark.parametrize("case", list(prompt_cases()))
@torch.no_grad()
def test_prompt_encoder_matches_reference(tiny, case):
    reference, ours, _ = tiny
    prompts = prompt_cases()[case]
    sparse, dense = ours.embed_prompts(**prompts)
    # The reference predictor's own assembly of boxes and points.
    decoder = reference.sam_mask_decoder
    captured = {}
    hook = decoder.register_forward_hook(lambda module, args, kwargs, out: captured.update(kwargs), with_kwargs=True)
    try:
        reference_decode(reference, torch.zeros(1, 64, 16, 16), [torch.zeros(1, 8, 64, 64),
                                                                 torch.zeros(1, 16, 32, 32)], **prompts)
    finally:
        hook.remove()
    assert max_diff(sparse, captured["sparse_prompt_embeddings"]) <= TOL
    assert max_diff(dense, captured["dense_prompt_embeddings"]) <= TOL
    assert max_diff(ours.sam_prompt_encoder.get_dense_pe(), reference.sam_prompt_encoder.get_dense_pe()) <= TOL


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", list(prompt_cases()))
@torch.no_grad()
def test_decoder_matches_reference(tiny, tiny_features, case, multimask):
    reference, ours, _ = tiny
    (embed_ref, high_res_ref), (embed, high_res) = tiny_features
    prompts = prompt_cases()[case]
    masks, iou, scores = ours.predict_masks(embed, high_res, multimask_output=multimask, **prompts)
    masks_ref, iou_ref, tokens_ref, scores_ref = reference_decode(reference, embed_ref, high_res_ref,
                                                                  multimask_output=multimask, **prompts)
    batch = prompts.get("point_coords", prompts.get("boxes")).shape[0]
    assert masks.shape == (batch, 3 if multimask else 1, 64, 64) and iou.shape == (batch, masks.shape[1])
    assert max_diff(masks, masks_ref) <= TOL
    assert max_diff(iou, iou_ref) <= TOL
    assert max_diff(scores, scores_ref) <= TOL
    sparse, dense = ours.embed_prompts(**prompts)
    tokens = ours.sam_mask_decoder(embed, ours.sam_prompt_encoder.get_dense_pe(), sparse, dense, multimask,
                                   high_res)[2]
    assert max_diff(tokens, tokens_ref) <= TOL


@pytest.mark.parametrize("threshold, stable", [(-1.0, True), (2.0, False)], ids=["stable", "unstable"])
@torch.no_grad()
def test_dynamic_multimask_branches_match_reference(tiny, tiny_features, threshold, stable):
    """One mask asked for: the single-mask output where stable, else the multimask output of highest IoU.
    Both branches forced through the threshold (stability scores lie in [0, 1])."""
    reference, ours, _ = tiny
    (embed_ref, high_res_ref), (embed, high_res) = tiny_features
    prompts = prompt_cases()["points_with_negatives"]
    for decoder in (ours.sam_mask_decoder, reference.sam_mask_decoder):
        assert decoder.dynamic_multimask_via_stability
        decoder.dynamic_multimask_stability_thresh = threshold
    try:
        masks, iou, _ = ours.predict_masks(embed, high_res, multimask_output=False, **prompts)
        masks_ref, iou_ref, _, _ = reference_decode(reference, embed_ref, high_res_ref, multimask_output=False,
                                                    **prompts)
    finally:
        for decoder in (ours.sam_mask_decoder, reference.sam_mask_decoder):
            decoder.dynamic_multimask_stability_thresh = TEST_CONFIG.dynamic_multimask_stability_thresh
    assert max_diff(masks, masks_ref) <= TOL and max_diff(iou, iou_ref) <= TOL
    all_masks, all_iou, _ = ours.predict_masks(embed, high_res, multimask_output=True, **prompts)
    if stable:  # token 0's mask, which multimask output never returns
        assert all((masks[i, 0] - all_masks[i]).abs().amax(dim=(-2, -1)).min() > 1e-3 for i in range(3))
    else:
        best = all_iou.argmax(dim=1)
        assert torch.equal(masks[:, 0], all_masks[torch.arange(3), best])


@torch.no_grad()
def test_prepared_image_decodes_like_forward(tiny, tiny_features):
    """The split entry points (prepare_image once, decode per prompt set, take) give forward's results."""
    _, ours, _ = tiny
    _, (embed, high_res) = tiny_features
    decoder, prompt_encoder = ours.sam_mask_decoder, ours.sam_prompt_encoder
    sparse, dense = ours.embed_prompts(**prompt_cases()["box_and_points"])
    image = decoder.prepare_image(embed, prompt_encoder.get_dense_pe(), dense[:1], high_res)
    expected = decoder(embed, prompt_encoder.get_dense_pe(), sparse, dense, True, high_res)
    actual = decoder.decode(image, sparse, True)
    for a, b in zip(actual, expected):
        assert max_diff(a, b) <= 1e-5
    decoded = decoder.decode_tokens(image, sparse).take(torch.tensor([2, 0]))
    assert max_diff(decoder.masks_from_tokens(decoded, slice(1, None)), expected[0][[2, 0]]) <= 1e-5
    assert max_diff(decoded.object_score_logits, expected[3][[2, 0]]) <= 1e-5


@torch.no_grad()
def test_decoder_without_optional_heads_matches_reference():
    """No object-score head, no high-resolution features, no IoU sigmoid, no dynamic multimask."""
    config = dataclasses.replace(TEST_CONFIG, use_high_res_features=False, pred_obj_scores=False,
                                 pred_obj_scores_mlp=False, iou_prediction_use_sigmoid=False,
                                 use_multimask_token_for_obj_ptr=False, dynamic_multimask_via_stability=False)
    reference = make_reference_sam2(config, seed=2)
    ours, _ = load_sam2(reference.state_dict(), config=config)
    images = random_images(256, seed=2)
    embed_ref, high_res_ref = reference_image_features(reference, images)
    embed, high_res = ours.encode_image(images)
    assert high_res == [] and high_res_ref == []
    assert max_diff(embed, embed_ref) <= TOL
    for case in ("points_with_negatives", "box_and_points"):
        for multimask in (True, False):
            prompts = prompt_cases()[case]
            masks, iou, scores = ours.predict_masks(embed, high_res, multimask_output=multimask, **prompts)
            masks_ref, iou_ref, _, scores_ref = reference_decode(reference, embed_ref, high_res_ref,
                                                                 multimask_output=multimask, **prompts)
            assert max_diff(masks, masks_ref) <= TOL and max_diff(iou, iou_ref) <= TOL
            assert torch.equal(scores, scores_ref) and (scores == 10.0).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_reduced_precision_runs_end_to_end(tiny, tiny_features, dtype):
    _, ours, _ = tiny
    _, (embed32, high_res32) = tiny_features
    model = build_sam2_model(TEST_CONFIG)
    model.load_state_dict(ours.state_dict())
    model.to(dtype=dtype)
    embed, high_res = model.encode_image(random_images(256).to(dtype))
    prompts = prompt_cases()["box_and_points"]
    outputs = model.predict_masks(embed, high_res, **prompts)
    assert embed.dtype == dtype and all(t.dtype == dtype for t in (*high_res, *outputs))
    assert all(torch.isfinite(t).all() for t in outputs)
    # Close to fp32 in relative terms.
    assert max_diff(embed, embed32) <= 0.05 * embed32.abs().max().item()
    masks32 = ours.predict_masks(embed32, high_res32, **prompts)[0]
    assert max_diff(outputs[0], masks32) <= 0.05 * masks32.abs().max().item()


# ----------------------------------------------------------------------------------------------- checkpoints

def test_checkpoint_keeps_video_weights_apart(tiny):
    reference, ours, video = tiny
    reference_names = reference.state_dict().keys()
    assert set(ours.state_dict()) | set(video) == set(reference_names)
    assert {name.split(".")[0] for name in video} == VIDEO_MODULES
    assert not set(ours.state_dict()) & set(video)


@pytest.mark.parametrize("name", OFFICIAL_SAM2_MODELS)
def test_official_sizes_are_recognised_from_shapes(name):
    with torch.device("meta"):
        state_dict = build_sam2_model(name).state_dict()
    # Official files hold the video model, whose 2.1-only tensors tell the versions apart.
    state_dict["maskmem_tpos_enc"] = torch.empty(7, 1, 1, 64)
    if name.startswith("sam2.1"):
        state_dict.update(no_obj_embed_spatial=torch.empty(1, 64), **{"obj_ptr_tpos_proj.weight": torch.empty(1)})
    found, config = recognise_official_model(state_dict)
    assert config == SAM2_CONFIGS[name]
    assert found == name


def test_an_image_model_file_is_taken_for_sam2_1():
    """Without video tensors nothing tells the versions apart; the image models are the same."""
    with torch.device("meta"):
        state_dict = build_sam2_model("sam2_hiera_small").state_dict()
    assert recognise_official_model(state_dict)[0] == "sam2.1_hiera_small"


def test_checkpoint_errors_list_every_problem(tiny, tmp_path):
    reference, _, _ = tiny
    state_dict = dict(reference.state_dict())
    assert load_sam2(state_dict)[0].config == SAM2_CONFIGS["sam2_hiera_test"]  # a registry entry's shapes
    pos_embed = state_dict["image_encoder.trunk.pos_embed"]
    resized = dict(state_dict, **{"image_encoder.trunk.pos_embed": pos_embed[..., :-1, :-1]})
    with pytest.raises(CheckpointError, match="match no official SAM 2 model; pass its Sam2Config"):
        load_sam2(resized)
    del state_dict["sam_mask_decoder.conv_s0.weight"]
    state_dict["image_encoder.extra"] = torch.zeros(1)
    state_dict["no_mem_embed"] = torch.zeros(1, 1, 65)
    with pytest.raises(CheckpointError) as error:
        load_sam2(state_dict, config="sam2_hiera_test")
    message = str(error.value)
    assert "missing keys (1): sam_mask_decoder.conv_s0.weight" in message
    assert "unexpected keys (1): image_encoder.extra" in message
    assert "no_mem_embed (1, 1, 65) vs (1, 1, 64)" in message
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_sam2(tmp_path / "absent.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_sam2(tmp_path / "bad.pt")


# ---------------------------------------------------------------------------------------------- Hugging Face

@torch.no_grad()
def test_hugging_face_sam2_matches(tmp_path):
    """A transformers Sam2Model save_pretrained folder loads (config from config.json) and matches it.

    Boxes are given as points labelled 2 and 3: transformers' ``input_boxes`` path appends a padding token
    after the corners, which Meta's predictor does not do."""
    hf_model = make_hf_sam2(TEST_CONFIG)
    hf_model.save_pretrained(tmp_path)
    ours, video = load_sam2(tmp_path)
    # A Sam2Model folder describes the image model only: the video settings keep their defaults.
    assert image_settings(ours.config) == image_settings(TEST_CONFIG) and video == {}
    images = random_images(256, seed=3)
    expected = hf_model.get_image_embeddings(images)
    embed, high_res = ours.encode_image(images)
    for actual, wanted in zip([*high_res, embed], expected):
        assert max_diff(actual, wanted) <= TOL
    points = torch.tensor([[[30.0, 40.0], [100.0, 200.0], [10.0, 10.0], [200.0, 230.0]]])
    labels = torch.tensor([[1, 0, 2, 3]])
    masks_in = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(4))
    for mask_input in (None, masks_in):
        for multimask in (True, False):
            out = hf_model(image_embeddings=expected, input_points=points[None], input_labels=labels[None],
                           input_masks=mask_input, multimask_output=multimask)
            masks, iou, scores = ours.predict_masks(embed, high_res, points, labels, mask_input=mask_input,
                                                    multimask_output=multimask)
            assert max_diff(masks, out.pred_masks[0]) <= TOL and max_diff(iou, out.iou_scores[0]) <= TOL
            assert max_diff(scores, out.object_score_logits[0]) <= TOL

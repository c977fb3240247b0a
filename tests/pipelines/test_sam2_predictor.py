"""Predictor with a SAM 2 model vs Meta's ``sam2.sam2_image_predictor.SAM2ImagePredictor`` on identical random
weights (every tensor randomised), and the ``sam_core.compat.SAM2ImagePredictor`` drop-in.

Tolerances: masks equal on >= 99.99 % of pixels, scores and low-res logits within 1e-4.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor as ReferencePredictor

from sam_core.compat import SAM2ImagePredictor, build_sam2, sam2_registry_name
from sam_core.io.checkpoints import load_sam
from sam_core.models.sam2 import SAM2_CONFIGS, Sam2Config
from sam_core.models.sam2.parity import make_reference_sam2, save_reference_pt
from sam_core.pipelines.masks import clean_low_res_logits
from sam_core.pipelines.predictor import Predictor

MASK_AGREEMENT = 0.9999
TOL = 1e-4
TEST_CONFIG = SAM2_CONFIGS["sam2_hiera_test"]
IMAGE_SHAPES = [(300, 500), (500, 300), (120, 90)]


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients with a few solid discs on top."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([255 * x / width, 255 * y / height, 128 + 60 * np.sin(x / 17 + y / 23)], axis=-1)
    for _ in range(5):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(min(height, width) // 10, min(height, width) // 3))
        cv2.circle(image, center, radius, rng.integers(0, 256, 3).tolist(), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def reference_predictor(model: torch.nn.Module, config: Sam2Config, **options) -> ReferencePredictor:
    predictor = ReferencePredictor(model, **options)
    side = config.image_size // 4  # Meta hard-codes the feature sizes of a 1024 input
    predictor._bb_feat_sizes = [(side, side), (side // 2, side // 2), (side // 4, side // 4)]
    return predictor


def assert_same(ours: tuple, theirs: tuple, cut: bool = True) -> None:
    masks, scores, low_res = ours
    ref_masks, ref_scores, ref_low_res = theirs
    assert masks.shape == ref_masks.shape and scores.shape == ref_scores.shape
    assert low_res.shape == ref_low_res.shape
    if masks.dtype == bool or ref_masks.dtype == bool or set(np.unique(ref_masks)) <= {0.0, 1.0}:
        assert (masks.astype(bool) == ref_masks.astype(bool)).mean() >= MASK_AGREEMENT
        if cut:  # parity of all-empty or all-full masks would prove little
            assert 0.0 < ref_masks.mean() < 1.0
    else:
        assert ((masks > 0) == (ref_masks > 0)).mean() >= MASK_AGREEMENT
        np.testing.assert_allclose(masks, ref_masks, atol=TOL, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=TOL, rtol=0)
    np.testing.assert_allclose(low_res, ref_low_res, atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def reference():
    return make_reference_sam2(TEST_CONFIG, seed=0)


@pytest.fixture(scope="module")
def meta_pt(reference, tmp_path_factory) -> Path:
    return save_reference_pt(reference, tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_test.pt")


@pytest.fixture(scope="module")
def ours_model(meta_pt):
    return load_sam(meta_pt)


@pytest.fixture(scope="module", params=IMAGE_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def predictor_pair(request, ours_model, reference):
    image = synthetic_image(*request.param)
    ours, theirs = Predictor(ours_model), reference_predictor(reference, TEST_CONFIG)
    ours.set_image(image)
    theirs.set_image(image)
    return ours, theirs


def scaled(predictor: Predictor, values: list[list[float]]) -> np.ndarray:
    height, width = predictor.original_size
    return np.asarray(values, dtype=np.float64) * np.array([width, height] * (len(values[0]) // 2))


PROMPTS = {
    "one_point": lambda p: dict(point_coords=scaled(p, [[0.3, 0.4]]), point_labels=np.array([1])),
    "points_with_negative": lambda p: dict(point_coords=scaled(p, [[0.3, 0.4], [0.6, 0.5], [0.8, 0.2]]),
                                           point_labels=np.array([1, 1, 0])),
    "box": lambda p: dict(box=scaled(p, [[0.1, 0.2, 0.7, 0.8]])[0]),
    "box_and_point": lambda p: dict(box=scaled(p, [[0.1, 0.2, 0.7, 0.8]])[0],
                                    point_coords=scaled(p, [[0.5, 0.5]]), point_labels=np.array([0])),
    "single_mask": lambda p: dict(point_coords=scaled(p, [[0.3, 0.4]]), point_labels=np.array([1]),
                                  multimask_output=False),
    "box_single_mask": lambda p: dict(box=scaled(p, [[0.1, 0.2, 0.7, 0.8]])[0], multimask_output=False),
    "return_logits": lambda p: dict(point_coords=scaled(p, [[0.6, 0.3]]), point_labels=np.array([1]),
                                    return_logits=True),
    "normalized_coords": lambda p: dict(point_coords=np.array([[0.3, 0.4], [0.7, 0.6]]),
                                        point_labels=np.array([1, 0]), box=np.array([0.1, 0.2, 0.7, 0.8]),
                                        normalize_coords=False),
}


@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_predict_matches_reference(predictor_pair, prompt):
    ours, theirs = predictor_pair
    kwargs = PROMPTS[prompt](ours)
    assert_same(ours.predict(**kwargs), theirs.predict(**kwargs))


def test_mask_input_from_previous_logits_matches_reference(predictor_pair):
    ours, theirs = predictor_pair
    prompt = dict(point_coords=scaled(ours, [[0.4, 0.5]]), point_labels=np.array([1]))
    _, scores, low_res = theirs.predict(**prompt)
    mask_input = low_res[np.argmax(scores)][None]
    assert np.abs(low_res).max() <= 32.0  # Meta clamps the low-res logits it returns
    for multimask in (True, False):
        kwargs = dict(prompt, mask_input=mask_input, multimask_output=multimask)
        assert_same(ours.predict(**kwargs), theirs.predict(**kwargs))
    only_mask = dict(mask_input=mask_input, multimask_output=False)
    assert_same(ours.predict(**only_mask), theirs.predict(**only_mask), cut=False)


def test_low_res_logits_are_clamped_like_the_reference(tmp_path):
    """Logits beyond +-32 are clamped in the low-res output only; masks come from the unclamped ones."""
    reference = make_reference_sam2(TEST_CONFIG, seed=2)
    with torch.no_grad():
        for mlp in reference.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(1000.0)
    model = load_sam(save_reference_pt(reference, tmp_path / "loud.pt"))
    image = synthetic_image(120, 90)
    ours, theirs = Predictor(model, mask_upscaling="torch"), reference_predictor(reference, TEST_CONFIG)
    ours.set_image(image)
    theirs.set_image(image)
    prompt = dict(point_coords=np.array([[30.0, 50.0]]), point_labels=np.array([1]), return_logits=True)
    result, expected = ours.predict(**prompt), theirs.predict(**prompt)
    assert np.abs(expected[0]).max() > 32.0 and np.abs(expected[2]).max() == 32.0
    np.testing.assert_allclose(result[0], expected[0], rtol=1e-5, atol=2e-3)
    np.testing.assert_allclose(result[2], expected[2], rtol=0, atol=2e-3)


def stable_threshold(predictor: Predictor, prompts: list[dict]) -> float:
    """A stability threshold between the single-mask outputs' scores of ``prompts``, so that both branches of
    the dynamic multimask choice are taken."""
    from sam_core.models.sam2.mask_decoder import stability_scores

    scores = []
    for prompt in prompts:
        _, _, low_res = predictor.predict(**prompt, multimask_output=True)
        model = predictor.model
        prepared = predictor._prepared[0]
        from sam_core.pipelines.prompts import prompts_from_arrays, to_model_frame

        batch = to_model_frame(prompts_from_arrays(**prompt, mask_input_size=64), predictor.transform,
                               predictor.original_size, model.device)
        with torch.no_grad():
            decoded = model.sam_mask_decoder.decode_tokens(prepared.no_mask_input,
                                                           model.embed_prompts(batch.point_coords,
                                                                               batch.point_labels, batch.boxes)[0])
            single = model.sam_mask_decoder.masks_from_tokens(decoded, slice(0, 1))
        scores.append(stability_scores(single[0, 0], 0.05).item())
    ordered = sorted(scores)
    assert ordered[0] < ordered[-1], scores
    return (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2


def test_both_branches_of_dynamic_multimask_match_reference(ours_model, reference):
    image = synthetic_image(300, 500)
    ours, theirs = Predictor(ours_model), reference_predictor(reference, TEST_CONFIG)
    ours.set_image(image)
    theirs.set_image(image)
    rng = np.random.default_rng(5)
    prompts = [dict(point_coords=rng.uniform([0, 0], [500, 300], (int(n), 2)), point_labels=np.ones(int(n)))
               for n in rng.integers(1, 4, 8)]
    threshold = stable_threshold(ours, prompts)
    decoders = (ours_model.sam_mask_decoder, reference.sam_mask_decoder)
    saved = [d.dynamic_multimask_stability_thresh for d in decoders]
    try:
        for decoder in decoders:
            decoder.dynamic_multimask_stability_thresh = threshold
        branches = set()
        for prompt in prompts:
            result, expected = ours.predict(**prompt, multimask_output=False), \
                theirs.predict(**prompt, multimask_output=False)
            assert_same(result, expected)
            _, multimask_scores, _ = ours.predict(**prompt)
            branches.add(bool(np.isin(result[1], multimask_scores).all()))
        assert branches == {True, False}  # some single masks were kept, some replaced by a multimask output
    finally:
        for decoder, value in zip(decoders, saved):
            decoder.dynamic_multimask_stability_thresh = value


def test_hole_filling_and_sprinkle_removal(ours_model):
    """The predictor's max_hole_area / max_sprinkle_area do what a plain definition says (Meta's predictor
    needs its CUDA extension for them and skips them on a CPU)."""
    image = synthetic_image(300, 500)
    plain, cleaned = Predictor(ours_model, mask_upscaling="torch"), Predictor(
        ours_model, mask_upscaling="torch", max_hole_area=40, max_sprinkle_area=25)
    plain.set_image(image)
    cleaned.set_image(image)
    prompt = dict(point_coords=np.array([[150.0, 120.0]]), point_labels=np.array([1]), return_logits=True)
    _, scores, low_res = plain.predict(**prompt)
    logits, cleaned_scores, cleaned_low_res = cleaned.predict(**prompt)
    np.testing.assert_array_equal(scores, cleaned_scores)
    np.testing.assert_array_equal(low_res, cleaned_low_res)  # the returned low-res logits are not cleaned
    expected = np.stack([plain_clean(mask, 0.0, 40, 25) for mask in low_res])
    upscaled = torch.nn.functional.interpolate(torch.from_numpy(expected)[None], (300, 500), mode="bilinear",
                                               align_corners=False)[0]
    np.testing.assert_allclose(logits, upscaled.numpy(), atol=1e-5)
    assert not np.array_equal(expected, low_res)  # something was cleaned


def plain_clean(logits: np.ndarray, threshold: float, max_hole: float, max_sprinkle: float) -> np.ndarray:
    """Flood fill with 8 neighbours: components of background of at most ``max_hole`` pixels -> threshold + 10,
    components of foreground of at most ``max_sprinkle`` pixels -> threshold - 10."""
    height, width = logits.shape
    foreground = logits > threshold
    out = logits.copy()
    seen = np.zeros_like(foreground)
    for start in zip(*np.nonzero(np.ones_like(foreground))):
        if seen[start]:
            continue
        value = foreground[start]
        component, stack = [], [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            component.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width and not seen[ny, nx] and foreground[ny, nx] == value:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        limit, fill = (max_sprinkle, threshold - 10.0) if value else (max_hole, threshold + 10.0)
        if len(component) <= limit:
            for y, x in component:
                out[y, x] = fill
    return out


def test_clean_low_res_logits_matches_plain_definition():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(cv2.GaussianBlur(rng.normal(size=(3, 40, 50)).astype(np.float32).transpose(1, 2, 0),
                                               (0, 0), 1.2).transpose(2, 0, 1).copy())
    for threshold, hole, sprinkle in [(0.0, 12, 0), (0.0, 0, 9), (0.1, 30, 20), (-0.2, 1, 1)]:
        result = clean_low_res_logits(logits, threshold, hole, sprinkle)
        expected = np.stack([plain_clean(m, threshold, hole, sprinkle) for m in logits.numpy()])
        np.testing.assert_array_equal(result.numpy(), expected)
    assert clean_low_res_logits(logits, 0.0) is logits


def test_set_image_batch_and_predict_batch_match_reference(ours_model, reference):
    images = [synthetic_image(300, 500, seed=1), synthetic_image(120, 90, seed=2)]
    ours, theirs = Predictor(ours_model), reference_predictor(reference, TEST_CONFIG)
    ours.set_image_batch(images)
    theirs.set_image_batch(images)
    points = [np.array([[100.0, 120.0]]), np.array([[40.0, 60.0], [20.0, 30.0]])]
    labels = [np.array([1]), np.array([1, 0])]
    boxes = [None, np.array([5.0, 10.0, 60.0, 100.0])]
    results = ours.predict_batch(points, labels, boxes)
    masks, scores, low_res = theirs.predict_batch(points, labels, [np.array(b) if b is not None else None
                                                                   for b in boxes])
    for result, expected in zip(results, zip(masks, scores, low_res)):
        assert_same(result, expected)


def test_compat_predictor_has_meta_signatures_and_results(ours_model, reference, meta_pt):
    image = synthetic_image(300, 500)
    ours, theirs = SAM2ImagePredictor(ours_model), reference_predictor(reference, TEST_CONFIG)
    ours.set_image(image)
    theirs.set_image(image)
    prompt = dict(point_coords=np.array([[150.0, 100.0]]), point_labels=np.array([1]))
    result, expected = ours.predict(**prompt), theirs.predict(**prompt)
    assert result[0].dtype == expected[0].dtype == np.float32
    assert_same(result, expected)
    # Batched prompts on one image, as Meta's predict takes them.
    batched = dict(point_coords=np.array([[[150.0, 100.0]], [[400.0, 200.0]]]), point_labels=np.array([[1], [1]]),
                   box=np.array([[10.0, 20.0, 300.0, 250.0], [200.0, 50.0, 480.0, 290.0]]))
    result, expected = ours.predict(**batched), theirs.predict(**batched)
    assert result[0].shape == expected[0].shape == (2, 3, 300, 500)
    assert_same(result, expected)
    assert torch.equal(ours._features["image_embed"], theirs._features["image_embed"])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours._features["high_res_feats"],
                                                                theirs._features["high_res_feats"]))
    assert ours._orig_hw == [(300, 500)] and ours.get_image_embedding().shape == (1, 64, 16, 16)
    ours.set_image_batch([image, synthetic_image(120, 90)])
    theirs.set_image_batch([image, synthetic_image(120, 90)])
    batch = dict(point_coords_batch=[np.array([[10.0, 20.0]]), np.array([[30.0, 40.0]])],
                 point_labels_batch=[np.array([1]), np.array([1])], multimask_output=False)
    for result, expected in zip(zip(*ours.predict_batch(**batch)), zip(*theirs.predict_batch(**batch))):
        assert_same(result, expected)
    ours.reset_predictor()
    with pytest.raises(RuntimeError, match="set_image"):
        ours.predict(**prompt)


def test_build_sam2_drop_in(meta_pt, tmp_path):
    assert sam2_registry_name("configs/sam2.1/sam2.1_hiera_t.yaml") == "sam2.1_hiera_tiny"
    assert sam2_registry_name("sam2_hiera_b+.yaml") == "sam2_hiera_base_plus"
    assert sam2_registry_name("configs/sam2/sam2_hiera_l.yaml") == "sam2_hiera_large"
    with pytest.raises(ValueError, match="unknown SAM 2 config"):
        sam2_registry_name("configs/sam2.1/sam2.1_hiera_xl.yaml")
    full = build_sam2("configs/sam2.1/sam2.1_hiera_s.yaml", apply_postprocessing=False, mode="train")
    assert full.config == dataclasses.replace(SAM2_CONFIGS["sam2.1_hiera_small"],
                                              dynamic_multimask_via_stability=False) and full.training
    model = build_sam2("sam2_hiera_test", ckpt_path=meta_pt)
    assert model.config == TEST_CONFIG and not model.training
    with pytest.raises(ValueError, match="hydra"):
        build_sam2("sam2_hiera_test", hydra_overrides_extra=["++model.x=1"])


BAD_PROMPTS = {
    "coords_not_nx2": (dict(point_coords=np.array([1.0, 2.0]), point_labels=np.array([1])), r"\(N, 2\)"),
    "labels_length": (dict(point_coords=np.ones((2, 2)), point_labels=np.array([1])), "point_labels"),
    "labels_missing": (dict(point_coords=np.ones((1, 2))), "together"),
    "label_outside_0_1": (dict(point_coords=np.ones((2, 2)), point_labels=np.array([1, 2])), "1 .*or 0"),
    "coords_nan": (dict(point_coords=np.array([[np.nan, 1.0]]), point_labels=np.array([1])), "NaN"),
    "box_three_numbers": (dict(box=np.array([1.0, 2.0, 3.0])), "4 numbers"),
    "box_x1_before_x0": (dict(box=np.array([50.0, 10.0, 20.0, 40.0])), "x1 >= x0"),
    "mask_input_wrong_size": (dict(mask_input=np.zeros((1, 256, 256))), r"\(1, 64, 64\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROMPTS))
def test_bad_prompts_raise_the_same_errors_as_for_sam(ours_model, case):
    predictor = Predictor(ours_model)
    predictor.set_image(synthetic_image(60, 80))
    kwargs, message = BAD_PROMPTS[case]
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)
    compat = SAM2ImagePredictor(ours_model)
    compat.set_image(synthetic_image(60, 80))
    with pytest.raises(ValueError, match=message):
        compat.predict(**kwargs)


def test_full_size_hiera_tiny_on_a_photo(tmp_path):
    """Hiera-T at 1024 x 1024 on an 1800 x 1200 synthetic image."""
    config = SAM2_CONFIGS["sam2.1_hiera_tiny"]
    reference = make_reference_sam2(config, seed=1)
    ours_model = load_sam(save_reference_pt(reference, tmp_path / "sam2.1_hiera_tiny.pt"))
    assert ours_model.config == config
    image = synthetic_image(1200, 1800)
    assert image.shape == (1200, 1800, 3)
    ours, theirs = Predictor(ours_model), ReferencePredictor(reference)
    ours.set_image(image)
    theirs.set_image(image)
    for prompt in (dict(point_coords=np.array([[500.0, 375.0]]), point_labels=np.array([1])),
                   dict(box=np.array([75.0, 275.0, 1725.0, 850.0]), point_coords=np.array([[575.0, 750.0]]),
                        point_labels=np.array([0]), multimask_output=False)):
        assert_same(ours.predict(**prompt), theirs.predict(**prompt))


def test_embedding_save_load_predicts_the_same(ours_model, tmp_path):
    predictor = Predictor(ours_model)
    predictor.set_image(synthetic_image(120, 90))
    prompt = dict(point_coords=np.array([[30.0, 50.0]]), point_labels=np.array([1]))
    expected = predictor.predict(**prompt)
    predictor.save_embedding(tmp_path / "features.safetensors")
    restored = Predictor(ours_model)
    restored.load_embedding(tmp_path / "features.safetensors")
    for a, b in zip(restored.predict(**prompt), expected):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="load_embedding"):
        restored.set_image_embedding(restored.get_image_embedding(), (120, 90))

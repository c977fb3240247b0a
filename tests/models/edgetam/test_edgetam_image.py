"""EdgeTAM's image model against Meta's code (``edgetam-dimos``, in a subprocess) and transformers' EdgeTamModel
on the same random weights, every tensor randomised (BatchNorm statistics, latents, position embeddings), each
written in its own format and read by ``load_sam``. Tolerance: 1e-4 on logits, scores and features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from edgetam_case import CONFIG, PROMPTS

import sam_core
from sam_core.io.checkpoints import load_checkpoint
from sam_core.models.edgetam import EDGETAM_CONFIGS, EdgeTam
from sam_core.models.edgetam.parity import make_hf_edgetam
from sam_core.models.sam2.config import image_settings

TOL = 1e-4
TEST = EDGETAM_CONFIGS["edgetam_test"]


def image_part(config) -> dict:
    return {name: value for name, value in image_settings(config).items() if not name.startswith("perceiver_")}


def max_diff(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a, dtype=np.float32)), torch.as_tensor(np.asarray(b, dtype=np.float32))
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def predict(predictor: sam_core.Predictor, prompt: dict) -> tuple[np.ndarray, ...]:
    return predictor.predict(point_coords=np.array(prompt["points"]) if "points" in prompt else None,
                             point_labels=np.array(prompt["labels"]) if "points" in prompt else None,
                             box=np.array(prompt["box"]) if "box" in prompt else None,
                             multimask_output=prompt["multimask"], return_logits=True)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_meta_edgetam_pt_matches_meta_predictor(meta, photo, fast):
    """Meta's file loads (config read from its shapes, the video modules handed back apart) and the Predictor's
    features, masks, scores and low-res logits equal SAM2ImagePredictor's on Meta's model."""
    loaded = load_checkpoint(meta["checkpoint"])
    model = loaded.model
    # Shapes do not tell the input size (1024 unless told): everything else is read from them.
    assert isinstance(model, EdgeTam) and dataclasses.replace(model.config, image_size=CONFIG.image_size) == CONFIG
    model = load_checkpoint(meta["checkpoint"], config=CONFIG).model
    assert any(name.startswith("spatial_perceiver.") for name in loaded.extras)
    reference = meta["image"]
    predictor = sam_core.Predictor(model)
    with sam_core.fast_paths(fast):
        predictor.set_image(photo)
        features = predictor.features_by_name
        assert max_diff(features["image_embed"], reference["image_embed"]) <= TOL
        for key, expected in zip(("high_res_feats_0", "high_res_feats_1"), reference["high_res_feats"]):
            assert max_diff(features[key], expected) <= TOL
        worst = 0.0
        for index, prompt in enumerate(PROMPTS):
            outputs = predict(predictor, prompt)
            for actual, expected in zip(outputs, reference[f"prompt{index}"]):  # masks (logits), scores, low-res
                worst = max(worst, max_diff(actual, expected))
        assert worst <= TOL
    print(f"EdgeTAM image vs Meta ({'fast' if fast else 'plain'} paths): max difference {worst:.2e}")


@torch.no_grad()
def test_hugging_face_edgetam_matches(tmp_path):
    """A transformers EdgeTamModel folder loads through load_sam (config from config.json) and matches it:
    image features, then masks, IoU and object scores for clicks, box corners (labels 2, 3) and a mask input."""
    hf_model = make_hf_edgetam(TEST, seed=1)
    hf_model.save_pretrained(tmp_path)
    ours = sam_core.load_sam(tmp_path)
    # An EdgeTamModel folder describes the image model only: the video settings (the perceiver's too) keep
    # their defaults.
    assert isinstance(ours, EdgeTam) and image_part(ours.config) == image_part(TEST)
    images = torch.randn(1, 3, TEST.image_size, TEST.image_size, generator=torch.Generator().manual_seed(2))
    expected = hf_model.get_image_embeddings(images)
    embed, high_res = ours.encode_image(images)
    worst = max(max_diff(actual, wanted) for actual, wanted in zip([*high_res, embed], expected))
    points = torch.tensor([[[30.0, 40.0], [100.0, 200.0], [10.0, 10.0], [200.0, 230.0]]])
    labels = torch.tensor([[1, 0, 2, 3]])
    mask_input = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(4))
    for masks_in in (None, mask_input):
        for multimask in (True, False):
            out = hf_model(image_embeddings=expected, input_points=points[None], input_labels=labels[None],
                           input_masks=masks_in, multimask_output=multimask)
            masks, iou, scores = ours.predict_masks(embed, high_res, points, labels, mask_input=masks_in,
                                                    multimask_output=multimask)
            worst = max(worst, max_diff(masks, out.pred_masks[0]), max_diff(iou, out.iou_scores[0]),
                        max_diff(scores, out.object_score_logits[0]))
    assert worst <= TOL
    print(f"EdgeTAM image vs transformers: max difference {worst:.2e}")

"""``pipeline("mask-generation")`` of sam_core.compat.transformers against transformers 5.25's pipeline on the
same tiny random checkpoints (transformers' own ``save_pretrained`` folders, every tensor random): same masks,
in the same order, with the same scores, with the quality filters off (so that masks survive; crop layers
included) and with the guide's options; and the calls transformers 5.25 fails on, working here.

Masks are compared pixel by pixel; the two implementations' logits differ by float rounding (<= 2e-6 here),
so a pixel whose logit lies that close to the threshold may differ: at most 1 in 10^4 pixels is allowed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import sam_core
from sam_core.compat import transformers as compat
from sam_core.models.edge_sam import TINY_EDGE_SAM
from sam_core.models.efficientvit import EFFICIENTVIT_SAM_CONFIGS
from sam_core.models.mobile_sam.config import MobileSamConfig
from sam_core.models.sam.config import SAM_CONFIGS
from sam_core.models.sam_hq import SamHqConfig
from sam_core.models.tiny_vit.config import TinyViTConfig
from sam_core.pipelines.masks import batched_mask_to_box, rle_to_mask

OFF = {"pred_iou_thresh": 0, "stability_score_thresh": 0}
SCORE_TOL = 1e-4
PIXEL_TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: object) -> None:
    """Tiny models on a busy machine: one torch thread."""


@pytest.fixture(scope="module")
def generators(hf_folders: dict) -> dict:
    """family -> (transformers' pipeline, ours), on the same folder."""
    import transformers  # the reference (test extra)

    return {family: (transformers.pipeline("mask-generation", model=str(folder), device="cpu"),
                     compat.pipeline("mask-generation", model=folder))
            for family, folder in hf_folders.items()}


def assert_same_output(theirs: dict, ours: dict, compare_masks: bool = True) -> None:
    assert len(ours["masks"]) == len(theirs["masks"]) == len(ours["scores"])
    assert ours["scores"].dtype == theirs["scores"].dtype == torch.float32
    assert (ours["scores"] - theirs["scores"]).abs().max() <= SCORE_TOL if len(ours["scores"]) else True
    if compare_masks and ours["masks"]:
        mine, expected = torch.stack(ours["masks"]), torch.stack(theirs["masks"])
        assert mine.dtype == expected.dtype == torch.bool and mine.shape == expected.shape
        assert (mine != expected).float().mean() <= PIXEL_TOL


# transformers' SamHQ masks are not SAM-HQ's (tests/compat/transformers/test_models.py): its scores are compared.
@pytest.mark.parametrize(("family", "image", "options"), [
    ("sam", "photo", {"crops_n_layers": 1, "crops_nms_thresh": 1.0}),
    ("sam", "photo", {"crops_n_layers": 2, "points_per_crop": 2}),
    ("sam2", "square_photo", {"crops_n_layers": 1, "crops_nms_thresh": 1.0}),
    ("sam_hq", "square_photo", {"crops_nms_thresh": 1.0}),
], ids=["sam-1-layer-all-kept", "sam-2-layers-nms", "sam2-1-layer-all-kept", "sam_hq-scores"])
def test_filters_off_match_transformers(generators: dict, request: pytest.FixtureRequest, family: str, image: str,
                                        options: dict) -> None:
    theirs, ours = generators[family]
    photo = request.getfixturevalue(image)
    arguments = {"points_per_crop": 4, **OFF, **options}
    expected, got = theirs(photo, **arguments), ours(photo, **arguments)
    assert len(got["masks"]) > 1
    assert_same_output(expected, got, compare_masks=family != "sam_hq")


@pytest.mark.parametrize("options", [{}, {"crops_nms_thresh": 1.0}], ids=["guide", "all-kept"])
def test_guide_options_match_transformers(generators: dict, photo, options: dict) -> None:
    """The guide's call, ``points_per_batch=128, pred_iou_thresh=0.88`` (stability filter at its default 0.95),
    on weights whose masks pass the filters; 8 x 8 points instead of 32 x 32, for time."""
    theirs, ours = generators["sam_confident"]
    arguments = {"points_per_batch": 128, "pred_iou_thresh": 0.88, "points_per_crop": 8, "output_rle_mask": True,
                 "output_bboxes_mask": True, **options}
    expected, got = theirs(photo, **arguments), ours(photo, **arguments)
    assert len(got["masks"]) >= 1 and set(got) == {"masks", "scores", "rle_mask", "bounding_boxes"}
    assert_same_output(expected, got)
    same = [i for i, (a, b) in enumerate(zip(expected["masks"], got["masks"])) if torch.equal(a, b)]
    assert len(same) >= len(got["masks"]) - 1
    assert all(got["rle_mask"][i] == expected["rle_mask"][i] for i in same)
    assert torch.equal(got["bounding_boxes"][same], expected["bounding_boxes"][same])


def test_where_transformers_fails_sam_core_works(generators: dict, photo) -> None:
    theirs, ours = generators["sam"]
    downscaled = {"crops_n_layers": 1, "crop_n_points_downscale_factor": 2, "points_per_crop": 4, **OFF}
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        theirs(photo, **downscaled)
    result = ours(photo, **downscaled, crops_nms_thresh=1.0, output_bboxes_mask=True)
    # 16 points on the image, 4 on each of its 4 crops, 3 masks each, less those cut by a crop's inner edge.
    assert 48 <= len(result["masks"]) <= 48 + 48
    assert torch.equal(batched_mask_to_box(torch.stack(result["masks"])), result["bounding_boxes"])
    with pytest.raises(TypeError, match="Incorrect format used for image"):
        theirs(np.asarray(photo), **OFF, points_per_crop=2)
    from_array, from_pil = ours(np.asarray(photo), **OFF, points_per_crop=2), ours(photo, **OFF, points_per_crop=2)
    assert torch.equal(from_array["scores"], from_pil["scores"])
    assert all(torch.equal(a, b) for a, b in zip(from_array["masks"], from_pil["masks"]))


def test_lists_paths_and_bad_parameters(generators: dict, photo, tmp_path) -> None:
    _, ours = generators["sam"]
    path = tmp_path / "photo.png"
    photo.save(path)
    results = ours([photo, str(path)], points_per_crop=2, **OFF, output_rle_mask=True)
    assert isinstance(results, list) and len(results) == 2
    assert torch.equal(results[0]["scores"], results[1]["scores"])
    assert all(np.array_equal(rle_to_mask(rle), mask.numpy()) for rle, mask in zip(results[0]["rle_mask"],
                                                                                   results[0]["masks"]))
    with pytest.raises(ValueError, match="unknown mask-generation parameter"):
        ours(photo, points_per_side=4)
    with pytest.raises(ValueError, match="leaves no points in crop layer 1"):
        ours(photo, points_per_crop=1, crops_n_layers=1, crop_n_points_downscale_factor=2)
    with pytest.raises(ValueError, match="task='mask-generation' only"):
        compat.pipeline("image-segmentation", model=ours.model)


TINY_MOBILE_SAM = MobileSamConfig(
    encoder=TinyViTConfig(embed_dims=(16, 24, 32, 320), depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 4),
                          window_sizes=(7, 7, 14, 7), mlp_ratio=2.0, mbconv_expand_ratio=2.0),
    decoder_mlp_dim=64, iou_head_hidden_dim=32)
FAMILY_MODELS = {  # the shipped shapes models, and small random models of the other families
    "sam_shapes": lambda: sam_core.load_sam("weights/sam_vit_tiny_shapes.safetensors"),
    "sam2_shapes": lambda: sam_core.load_sam("weights/sam2_hiera_test_shapes.safetensors"),
    "sam_hq": lambda: sam_core.build_sam(SamHqConfig(SAM_CONFIGS["vit_tiny"])),
    "mobile_sam": lambda: sam_core.build_sam(TINY_MOBILE_SAM),
    "efficientvit_sam": lambda: sam_core.build_sam(dataclasses.replace(
        EFFICIENTVIT_SAM_CONFIGS["efficientvit_sam_l0"], encoder_image_size=128)),
    "edge_sam": lambda: sam_core.build_sam(TINY_EDGE_SAM),
    "sam3": lambda: sam_core.build_sam("sam3_test"),
    "edgetam": lambda: sam_core.build_sam("edgetam_test"),
}


@pytest.mark.parametrize("name", list(FAMILY_MODELS))
def test_every_family_runs_through_the_pipeline(square_photo, name: str) -> None:
    """Any model load_sam returns works through pipeline(...): masks survive with the filters off, and the
    output has transformers' structure (bool (H, W) masks, float32 scores best first, RLEs, boxes)."""
    generator = compat.pipeline("mask-generation", model=FAMILY_MODELS[name]())
    result = generator(square_photo, points_per_crop=3, **OFF, output_rle_mask=True, output_bboxes_mask=True)
    masks = result["masks"]
    assert len(masks) >= 1 and len(result["scores"]) == len(masks) == len(result["rle_mask"])
    assert all(mask.dtype == torch.bool and mask.shape == (64, 64) for mask in masks)
    assert result["scores"].is_floating_point()
    assert torch.equal(result["scores"], result["scores"].sort(descending=True).values)
    assert torch.equal(batched_mask_to_box(torch.stack(masks)), result["bounding_boxes"])
    assert all(np.array_equal(rle_to_mask(rle), mask.numpy()) for rle, mask in zip(result["rle_mask"], masks))

"""``SamModel`` / ``SamHQModel`` / ``Sam2Model`` and ``SamProcessor`` / ``Sam2Processor`` of
sam_core.compat.transformers against transformers 5.25's on the same tiny random checkpoints (every tensor
random, written by transformers' ``save_pretrained``): processor outputs identical, model outputs within 1e-4,
post-processed masks equal. SAM-HQ's masks are not compared: transformers' SamHQ decoder upscales the image
embedding where segment-anything-hq (and sam_core) upscale the transformer's image tokens (see
tests/models/test_sam_hq.py); its IoU scores are."""

from __future__ import annotations

import huggingface_hub
import numpy as np
import pytest
import torch

from sam_core.compat import transformers as compat

TOL = 1e-4
PROMPTS = {  # the guide's calls, and transformers' other nestings
    "guide_point": {"input_points": [[[40, 30]]]},
    "guide_box": {"input_boxes": [[[10, 8, 70, 50]]]},
    "objects_with_labels": {"input_points": [[[[40, 30], [10, 12]], [[60, 20], [20, 40]]]],
                            "input_labels": [[[1, 0], [1, 1]]]},
    "point_and_box": {"input_points": [[[[40, 30]]]], "input_boxes": [[[10, 8, 70, 50]]]},
}
FAMILIES = {"sam": "SamModel", "sam_hq": "SamHQModel", "sam2": "Sam2Model"}


def sam2_nesting(family: str, prompts: dict) -> dict:
    """SAM 2's processor wants [image][object][point][x, y]: the guide's 3-level points get their object level."""
    if family == "sam2" and "input_points" in prompts and np.ndim(prompts["input_points"]) == 3:
        return {**prompts, "input_points": [[points] for points in prompts["input_points"]]}
    return prompts


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: object) -> None:
    """Tiny models on a busy machine: one torch thread."""


@pytest.fixture(scope="module")
def pairs(hf_folders: dict) -> dict:
    """family -> (transformers' processor, model; ours)."""
    import transformers  # the reference (test extra)

    result = {}
    for family, name in FAMILIES.items():
        folder = hf_folders[family]
        processor = transformers.Sam2Processor if family == "sam2" else transformers.SamProcessor
        ours_processor = compat.Sam2Processor if family == "sam2" else compat.SamProcessor
        result[family] = (processor.from_pretrained(folder), getattr(transformers, name).from_pretrained(folder).eval(),
                          ours_processor.from_pretrained(folder), getattr(compat, name).from_pretrained(folder))
    return result


@pytest.mark.parametrize("case", list(PROMPTS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_outputs_match_transformers(pairs: dict, photo, family: str, case: str) -> None:
    their_processor, their_model, processor, model = pairs[family]
    prompts = sam2_nesting(family, PROMPTS[case])
    theirs = their_processor(photo, return_tensors="pt", **prompts)
    ours = processor(photo, return_tensors="pt", **prompts).to("cpu")
    assert theirs.keys() == ours.keys()
    for key in theirs:
        assert theirs[key].dtype == ours[key].dtype and torch.equal(theirs[key], ours[key]), key
    with torch.no_grad():
        expected = their_model(**theirs)
    got = model(**ours)
    assert got.iou_scores.shape == expected.iou_scores.shape
    assert (got.iou_scores - expected.iou_scores).abs().max() <= TOL
    if family == "sam_hq":
        return
    assert got.pred_masks.shape == expected.pred_masks.shape
    assert (got.pred_masks - expected.pred_masks).abs().max() <= TOL
    if family == "sam2":
        assert (got.object_score_logits - expected.object_score_logits).abs().max() <= TOL
    sizes = [ours["original_sizes"]] + ([ours["reshaped_input_sizes"]] if "reshaped_input_sizes" in ours else [])
    their_masks = their_processor.image_processor.post_process_masks(expected.pred_masks, *sizes)
    # The same logits post-processed: equal; our logits post-processed: equal but for pixels at the threshold.
    assert all(torch.equal(a, b) for a, b in zip(their_masks, processor.post_process_masks(expected.pred_masks,
                                                                                             *sizes)))
    our_masks = processor.image_processor.post_process_masks(got.pred_masks, *sizes)
    assert our_masks[0].shape == their_masks[0].shape == (*got.pred_masks.shape[1:3], 64, 96)
    assert (our_masks[0] != their_masks[0]).float().mean() <= 1e-3


@pytest.mark.parametrize("family", list(FAMILIES))
def test_image_embeddings_computed_once_and_reused(pairs: dict, photo, family: str) -> None:
    their_processor, their_model, processor, model = pairs[family]
    prompts = sam2_nesting(family, PROMPTS["guide_point"])
    inputs = processor(photo, **prompts)
    direct = model(**inputs)
    embeddings = model.get_image_embeddings(inputs.pop("pixel_values"))
    reused = model(**inputs, image_embeddings=embeddings)
    assert torch.equal(direct.iou_scores, reused.iou_scores) and torch.equal(direct.pred_masks, reused.pred_masks)
    with torch.no_grad():
        theirs = their_model.get_image_embeddings(their_processor(photo, return_tensors="pt")["pixel_values"])
    ours = embeddings if isinstance(embeddings, tuple) else (embeddings,)
    theirs = (theirs[0], *theirs[1]) if family == "sam_hq" else theirs if isinstance(theirs, list) else (theirs,)
    assert [t.shape for t in ours][:len(theirs)] == [t.shape for t in theirs][:len(ours)]
    if family != "sam_hq":  # transformers keeps SAM-HQ's early features channels-last
        assert max((a - b).abs().max() for a, b in zip(ours, theirs)) <= TOL


def test_uneven_points_padded_as_transformers(pairs: dict, photo) -> None:
    # transformers' SamProcessor pads uneven point lists between images (its numpy conversion fails within an
    # image, where sam_core pads too); Sam2Processor pads every level.
    cases = {"sam": ([photo, photo], {"input_points": [[[40, 30], [10, 12]], [[60, 20]]],
                                      "input_labels": [[1, 0], [1]]}),
             "sam2": (photo, {"input_points": [[[[40, 30], [10, 12]], [[60, 20]]]], "input_labels": [[[1, 0], [1]]]})}
    for family, (images, prompts) in cases.items():
        their_processor, _, processor, _ = pairs[family]
        theirs, ours = their_processor(images, return_tensors="pt", **prompts), processor(images, **prompts)
        assert torch.equal(theirs["input_points"], ours["input_points"]), family
        assert torch.equal(theirs["input_labels"], ours["input_labels"]), family
        assert (ours["input_labels"] == -10).sum() == 1 and (ours["input_points"] == -10).sum() == 2


@pytest.mark.parametrize(("processor", "prompts", "message"), [
    ("SamProcessor", {"input_points": [[40, 30]]}, r"\[image\]\[point\]\[x, y\] or \[image\]\[prompt set\]"),
    ("SamProcessor", {"input_points": [[[40, 30, 1]]]}, "innermost level must hold 2"),
    ("SamProcessor", {"input_boxes": [[10, 8, 70, 50]]}, r"\[image\]\[box\]\[x0, y0, x1, y1\]"),
    ("SamProcessor", {"input_points": [[[40, 30]]], "input_labels": [[1, 1]]}, "do not match input_points"),
    ("SamProcessor", {"input_points": [[[40, 30]]], "input_labels": [1]}, r"\[image\]\[point\]"),
    ("SamProcessor", {"input_points": [[[40, 30]], [[1, 2]]]}, "prompts for 2 images, but there are 1"),
    ("SamProcessor", {"input_points": [[[40, float("nan")]]]}, "NaN"),
    ("Sam2Processor", {"input_points": [[[40, 30]]]}, r"\[image level, object level, point level, point coord"),
    ("Sam2Processor", {"input_points": [[[[40, 30]]]], "input_labels": [[1]]}, r"\[image level, object level, point"),
])
def test_bad_nesting_names_the_expected_nesting(photo, processor: str, prompts: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        getattr(compat, processor)()(photo, **prompts)


def test_bad_model_inputs_are_clear(pairs: dict, photo) -> None:
    model = pairs["sam"][3]
    inputs = pairs["sam"][2](photo, input_points=[[[40, 30]]])
    with pytest.raises(ValueError, match=r"\(batch, prompt sets, points, 2\)"):
        model(pixel_values=inputs["pixel_values"], input_points=inputs["input_points"][0])
    with pytest.raises(ValueError, match="exactly one of pixel_values and image_embeddings"):
        model(input_points=inputs["input_points"])


def test_local_folder_is_never_downloaded(hf_folders: dict, photo, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"download attempted: {args}")

    import sam_core.compat.transformers.images
    import sam_core.io.checkpoints

    for module in (huggingface_hub, huggingface_hub.file_download, sam_core.io.checkpoints,
                   sam_core.compat.transformers.images):
        for name in ("hf_hub_download", "snapshot_download"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, no_download)
    folder = hf_folders["sam"]
    model, processor = compat.SamModel.from_pretrained(folder), compat.SamProcessor.from_pretrained(str(folder))
    assert processor.image_processor.target_size == 256
    assert model(**processor(photo, input_points=[[[40, 30]]])).pred_masks.shape == (1, 1, 3, 64, 64)
    generator = compat.pipeline("mask-generation", model=str(folder))
    assert len(generator(photo, points_per_crop=2, pred_iou_thresh=0, stability_score_thresh=0)["masks"]) > 0


def test_hq_token_only_gives_one_mask_one_score(pairs: dict, photo) -> None:
    """transformers 5.25 returns the HQ mask alone with all three IoU scores; sam_core returns it with the score
    of SAM's best mask, as segment-anything-hq does."""
    their_processor, their_model, processor, model = pairs["sam_hq"]
    with torch.no_grad():
        theirs = their_model(**their_processor(photo, input_points=[[[40, 30]]], return_tensors="pt"),
                             hq_token_only=True)
    ours = model(**processor(photo, input_points=[[[40, 30]]]), hq_token_only=True)
    assert theirs.pred_masks.shape[2] == 1 and theirs.iou_scores.shape[2] == 3
    assert ours.pred_masks.shape[2] == ours.iou_scores.shape[2] == 1
    assert (ours.iou_scores[..., 0] - theirs.iou_scores.max(dim=2).values).abs().max() <= TOL

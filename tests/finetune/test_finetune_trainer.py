"""The trainer: exact resume, outputs that load back to the same masks (sam_core and Meta's code), a model
that served predictions can be trained, guards, what each family trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import sam_core
from sam_core.cli import convert_main
from sam_core.finetune.config import FinetuneConfig
from sam_core.finetune.trainer import BEST, CURVES, LAST, METRICS, STATE, validation_score
from sam_core.jobs.samples import shapes_training_images
from sam_core.models.edge_sam import TINY_EDGE_SAM
from sam_core.models.sam.parity import make_reference_sam

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
SAM_WEIGHTS = ROOT / "weights" / "sam_vit_tiny_shapes.safetensors"
SAM2_WEIGHTS = ROOT / "weights" / "sam2_hiera_test_shapes.safetensors"
# The whole recipe (boxes, correction points, mask-only passes), the prompt encoder trained too.
RECIPE = FinetuneConfig(steps=6, images_per_step=2, objects_per_image=3, learning_rate=3e-4, warmup_steps=2,
                        correction_points=2, mask_only_iterations=2, eval_every=2, train=("decoder", "prompt"))
PROMPT = {"point_coords": np.array([[120.0, 90.0], [60.0, 40.0]]), "point_labels": np.array([1, 0])}


@pytest.fixture(scope="module")
def images() -> list[sam_core.finetune.AnnotatedImage]:
    return shapes_training_images(5, seed=11)


def run(tmp_path: Path, images, name: str, config: FinetuneConfig = RECIPE,
        **options) -> sam_core.finetune.FinetuneResult:
    model = options.pop("model", None) or sam_core.load_sam(SAM_WEIGHTS)
    options = {"cache_dir": tmp_path / "cache", "progress": False, "compare": False, **options}
    return sam_core.finetune(model, images[:4], images[4:], tmp_path / name, config, **options)


def masks_of(model: sam_core.PromptableSegmenter, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictor = sam_core.Predictor(model)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(**PROMPT)
    return masks, scores


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path: Path, images) -> None:
    straight = run(tmp_path, images, "straight")

    def interrupt(step: int, record: dict) -> None:
        if step == 5:  # one step after the state saved at step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, images, "resumed", on_step=interrupt)
    state = torch.load(tmp_path / "resumed" / STATE, weights_only=True)
    assert state["step"] == 4
    resumed = run(tmp_path, images, "resumed", resume=True)
    assert resumed.steps == straight.steps == 6
    for name in (LAST, BEST):
        expected, got = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[key], got[key]) for key in expected), name
    assert (resumed.best_step, resumed.best_score) == (straight.best_step, straight.best_score)

    def records(folder: str) -> list[dict]:
        lines = (tmp_path / folder / METRICS).read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    # The step-5 record of the interrupted run was dropped on resume and written again.
    assert records("resumed") == records("straight")


def test_outputs_load_back_to_the_in_memory_model_and_into_meta_code(tmp_path: Path, images) -> None:
    result = run(tmp_path, images, "out")
    image = images[4].load_image()
    masks, scores = masks_of(result.model, image)
    reloaded = sam_core.load_sam(result.best_path)
    for got, expected in zip(masks_of(reloaded, image), (masks, scores)):
        np.testing.assert_array_equal(got, expected)
    base_masks, _ = masks_of(sam_core.load_sam(SAM_WEIGHTS), image)
    assert sam_core.load_sam(result.last_path).config == result.model.config

    # sam-convert writes Meta's .pth layout, which segment_anything's own model and predictor read.
    from segment_anything import SamPredictor

    pth = tmp_path / "finetuned.pth"
    assert convert_main([str(result.best_path), str(pth)]) == 0
    reference = make_reference_sam(result.model.config)
    reference.load_state_dict(torch.load(pth, weights_only=True))
    predictor = SamPredictor(reference)
    predictor.set_image(image)
    reference_masks, reference_scores, _ = predictor.predict(**PROMPT)
    assert (reference_masks != masks).mean() < 1e-3
    np.testing.assert_allclose(reference_scores, scores, atol=1e-4)
    assert not np.array_equal(base_masks, masks) or result.best_step == 0


def test_files_metrics_and_the_best_criterion(tmp_path: Path, images) -> None:
    result = run(tmp_path, images, "out", compare=True)
    folder = tmp_path / "out"
    assert {path.name for path in folder.iterdir()} == {BEST, LAST, STATE, METRICS, CURVES}
    assert (folder / CURVES).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = [json.loads(line) for line in (folder / METRICS).read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in train] == list(range(1, 7))
    assert [r["step"] for r in val] == [0, 2, 4, 6]
    assert all(r["objects"] > 0 and np.isfinite(r["loss"]) for r in train)
    best = max(val, key=lambda r: (r["val_miou"], -r["step"]))  # the first of equal scores
    assert (result.best_step, result.best_score) == (best["step"], best["val_miou"])
    # The validation score is the mean of the centre-click and box mIoUs of sam_core.evaluate.
    assert result.after is not None and result.before is not None
    assert validation_score(result.after) == pytest.approx(best["val_miou"])
    assert result.before.summary["num_objects"] == result.after.summary["num_objects"] > 0
    assert "miou_1click" in result.comparison


def test_without_validation_images_best_is_last(tmp_path: Path, images) -> None:
    model = sam_core.load_sam(SAM_WEIGHTS)
    config = RECIPE.replace(steps=3, eval_every=5)
    result = sam_core.finetune(model, images, [], tmp_path / "out", config, cache_dir=tmp_path / "cache",
                               progress=False)
    assert (result.best_step, result.best_score, result.before) == (3, None, None)
    best, last = load_file(tmp_path / "out" / BEST), load_file(tmp_path / "out" / LAST)
    assert best.keys() == last.keys() and all(torch.equal(best[key], last[key]) for key in best)


def test_a_model_that_served_predictions_can_be_fine_tuned(tmp_path: Path, images) -> None:
    model = sam_core.load_sam(SAM_WEIGHTS)
    before, _ = masks_of(model, images[0].load_image())  # leaves inference-mode tensors in module caches
    decoder_before = {k: v.clone() for k, v in model.mask_decoder.state_dict().items()}
    run(tmp_path, images, "out", RECIPE.replace(steps=2, eval_every=2), model=model)
    last = load_file(tmp_path / "out" / LAST)
    assert any(not torch.equal(last[f"mask_decoder.{k}"], v) for k, v in decoder_before.items())
    assert before.shape[0] == 3


def test_guards(tmp_path: Path, images) -> None:
    run(tmp_path, images, "out", RECIPE.replace(steps=1, eval_every=1))
    with pytest.raises(FileExistsError, match="resume"):
        run(tmp_path, images, "out", RECIPE.replace(steps=1, eval_every=1))
    with pytest.raises(ValueError, match="learning_rate"):
        run(tmp_path, images, "out", RECIPE.replace(steps=1, eval_every=1, learning_rate=1.0), resume=True)
    with pytest.raises(ValueError, match="another base model"):
        other = sam_core.load_sam(SAM_WEIGHTS)
        with torch.no_grad():
            other.image_encoder.patch_embed.proj.bias.add_(1.0)
        run(tmp_path, images, "out", RECIPE.replace(steps=1, eval_every=1), resume=True, model=other)
    with pytest.raises(ValueError, match="float32"):
        run(tmp_path, images, "half", model=sam_core.load_sam(SAM_WEIGHTS, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="train"):
        FinetuneConfig(train=("encoder",))


def sam2_shapes_model() -> sam_core.PromptableSegmenter:
    return sam_core.load_sam(SAM2_WEIGHTS, dtype=torch.float32)  # the file holds float16


def edge_sam_model() -> sam_core.PromptableSegmenter:
    return sam_core.build_sam(TINY_EDGE_SAM)


@pytest.mark.parametrize(("make_model", "decoder", "frozen"), [
    (sam2_shapes_model, "sam_mask_decoder.", ("sam_mask_decoder.conv_s", "image_encoder.", "no_mem_embed")),
    (edge_sam_model, "mask_decoder.", ("image_encoder.",)),
], ids=["sam2", "edge_sam"])
def test_another_family_trains_its_decoder_and_keeps_its_image_encoding(tmp_path: Path, images, make_model,
                                                                        decoder, frozen) -> None:
    model = make_model()
    family, config = model.family, model.config
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = RECIPE.replace(steps=2, eval_every=2, train=("decoder",))
    result = sam_core.finetune(model, images[:2], images[4:], tmp_path / "out", recipe,
                               cache_dir=tmp_path / "cache", progress=False, compare=False)
    after = load_file(result.last_path)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith(decoder) for name in changed)
    assert not any(name.startswith(frozen) for name in changed)
    reloaded = sam_core.load_sam(result.last_path)
    assert reloaded.family == family and reloaded.config == config

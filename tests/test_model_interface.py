"""The model interface: a new family plugs into the registry, load_sam/save_sam, Predictor and the automatic mask
generator by implementing PromptableSegmenter alone, with no change to any of them.

The family here is a toy: it segments the flat-coloured region under the first positive point. Its masks
have an independent reference, the rectangles drawn into the test image.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sam_core
from sam_core import registry as families
from sam_core.interface import (
    GeneratorDefaults,
    ImageFeatures,
    ModelFamily,
    PreparedImage,
    PromptableSegmenter,
    Prompts,
)
from sam_core.transforms import ResizeLongestSide

SIDE = 128


@dataclass(frozen=True)
class ColourConfig:
    image_size: int = SIDE

    def to_dict(self) -> dict[str, Any]:
        return {"image_size": self.image_size}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ColourConfig:
        return cls(**values)

    def summary(self) -> str:
        return f"image_size={self.image_size}"


@dataclass
class ColourScores:
    logits: torch.Tensor  # (B, 1, S, S)
    iou_predictions: torch.Tensor  # (B, 1)

    def take(self, index: torch.Tensor) -> ColourScores:
        return ColourScores(self.logits[index], self.iou_predictions[index])


class ColourRegionModel(PromptableSegmenter):
    """Logit = sharpness * (tolerance - colour distance to the first positive point), on the model grid."""

    family = "colour"
    embedding_key = "pixels"
    generator_defaults = GeneratorDefaults(pred_iou_thresh=0.5, stability_score_thresh=0.9)

    def __init__(self, config: ColourConfig) -> None:
        super().__init__()
        self.config = config
        self.transform = ResizeLongestSide(config.image_size)
        self.sharpness = torch.nn.Parameter(torch.tensor(50.0))

    @property
    def mask_input_size(self) -> int:
        return self.config.image_size

    @property
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"pixels": (3, self.config.image_size, self.config.image_size)}

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        images = images.float() / 255
        return F.pad(images, (0, size - images.shape[-1], 0, size - images.shape[-2]), value=-1.0)

    def encode(self, images: torch.Tensor) -> ImageFeatures:
        return {"pixels": images}

    def prepare_image(self, features: ImageFeatures) -> PreparedImage:
        return PreparedImage(features)

    def score_prompts(self, image: PreparedImage, prompts: Prompts, multimask_output: bool) -> ColourScores:
        pixels = image.features["pixels"][0]  # (3, S, S)
        first = prompts.point_coords[:, 0].round().long().clamp(0, self.config.image_size - 1)  # (B, 2) x, y
        colours = pixels[:, first[:, 1], first[:, 0]].T  # (B, 3)
        distance = (pixels[None] - colours[:, :, None, None]).abs().sum(dim=1, keepdim=True)
        logits = self.sharpness * (0.3 - distance)
        return ColourScores(logits, torch.ones(len(logits), 1))

    def draw_masks(self, scored: ColourScores) -> torch.Tensor:
        return scored.logits


def _owns(names: Collection[str]) -> bool:
    return set(names) == {"sharpness"}


COLOUR_FAMILY = ModelFamily(
    name="colour", config_type=ColourConfig, configs={"colour_64": ColourConfig()}, build=ColourRegionModel,
    owns_checkpoint=_owns, to_native_names=dict, infer_config=lambda state_dict, origin: ColourConfig(),
)


@pytest.fixture
def colour_family(monkeypatch):
    monkeypatch.setitem(families.FAMILIES, "colour", COLOUR_FAMILY)
    return COLOUR_FAMILY


def rectangles_image() -> tuple[np.ndarray, list[np.ndarray]]:
    """A 120x90 image: a red and a blue rectangle on grey, and the masks of all three regions."""
    image = np.full((90, 120, 3), 128, np.uint8)
    red, blue = np.zeros((90, 120), bool), np.zeros((90, 120), bool)
    red[10:40, 10:60] = True
    blue[50:85, 70:115] = True
    image[red] = (220, 30, 30)
    image[blue] = (30, 30, 220)
    return image, [red, blue, ~(red | blue)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_registry_builds_saves_and_loads_a_new_family(colour_family, tmp_path):
    model = sam_core.build_sam("colour_64")
    assert isinstance(model, ColourRegionModel) and "colour_64" in sam_core.model_names()
    with torch.no_grad():
        model.sharpness.fill_(7.0)
    path = sam_core.save_sam(model, tmp_path / "colour.safetensors")
    loaded = sam_core.load_sam(path)
    assert isinstance(loaded, ColourRegionModel) and loaded.sharpness.item() == 7.0
    assert sam_core.infer_config(loaded.state_dict()) == ColourConfig()
    torch.save(model.state_dict(), tmp_path / "colour.pth")
    assert isinstance(sam_core.load_sam(tmp_path / "colour.pth"), ColourRegionModel)  # detected from its keys
    with pytest.raises(sam_core.CheckpointError, match="colour model, but a sam config"):
        sam_core.load_sam(tmp_path / "colour.pth", config="vit_tiny")


def test_predictor_runs_a_new_family_unchanged(colour_family):
    image, (red, blue, _) = rectangles_image()
    predictor = sam_core.Predictor(ColourRegionModel(ColourConfig()))
    predictor.set_image(image)
    for region, point in ((red, [30, 20]), (blue, [90, 70])):
        masks, scores, low_res = predictor.predict(np.array([point]), np.array([1]))
        assert masks.shape == (1, 90, 120) and low_res.shape == (1, SIDE, SIDE) and scores.tolist() == [1.0]
        assert iou(masks[0], region) > 0.9
    assert predictor.get_image_embedding().shape == (1, 3, SIDE, SIDE)
    with pytest.raises(ValueError, match=rf"\(1, {SIDE}, {SIDE}\)"):
        predictor.predict(np.array([[1, 1]]), np.array([1]), mask_input=np.zeros((1, 256, 256)))


def test_generator_runs_a_new_family_with_its_defaults(colour_family):
    image, regions = rectangles_image()
    generator = sam_core.AutomaticMaskGenerator(ColourRegionModel(ColourConfig()), points_per_side=8)
    assert (generator.pred_iou_thresh, generator.stability_score_thresh) == (0.5, 0.9)  # the family's defaults
    records = generator.generate(image)
    for region in regions:
        assert max(iou(record["segmentation"], region) for record in records) > 0.9


def test_embedding_files_name_their_family(colour_family, tmp_path, tiny_pth):
    image, _ = rectangles_image()
    colour = sam_core.Predictor(ColourRegionModel(ColourConfig()))
    colour.set_image(image)
    colour.save_embedding(tmp_path / "colour.safetensors")
    sam = sam_core.Predictor(sam_core.load_sam(tiny_pth))
    with pytest.raises(ValueError, match="colour features"):
        sam.load_embedding(tmp_path / "colour.safetensors")
    restored = sam_core.Predictor(ColourRegionModel(ColourConfig()))
    restored.load_embedding(tmp_path / "colour.safetensors")
    assert torch.equal(restored.get_image_embedding(), colour.get_image_embedding())


def test_unknown_checkpoint_family_lists_the_known_ones(tmp_path):
    torch.save({"backbone.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(sam_core.CheckpointError, match=r"not a checkpoint of any known model family \(\[.*'sam'"):
        sam_core.load_sam(tmp_path / "other.pth")


@pytest.mark.parametrize("backend", ["torch", "opencv"])
def test_mask_upscaling_is_an_explicit_choice(tiny_pth, backend):
    image, _ = rectangles_image()
    chosen = sam_core.Predictor(sam_core.load_sam(tiny_pth), mask_upscaling=backend)
    default = sam_core.Predictor(sam_core.load_sam(tiny_pth))
    assert default.mask_upscaling == "opencv"
    for predictor in (chosen, default):
        predictor.set_image(image)
    prompt = dict(point_coords=np.array([[30, 20]]), point_labels=np.array([1]), return_logits=True)
    (got, _, _), (want, _, _) = chosen.predict(**prompt), default.predict(**prompt)
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    with pytest.raises(ValueError, match="mask_upscaling"):
        sam_core.Predictor(sam_core.load_sam(tiny_pth), mask_upscaling="cuda")

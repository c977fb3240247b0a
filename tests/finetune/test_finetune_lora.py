"""LoRA on the image encoder's qkv projections: merged weights compute what the adapters compute, for both
families (SAM 2's windowed attention reads the projection's bias for its padding), and a LoRA run trains
the adapters alone, runs the encoder every step and leaves a plain checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import sam_core
from sam_core.finetune.cache import encode_images
from sam_core.finetune.config import FinetuneConfig
from sam_core.finetune.lora import LoRALinear, add_lora, lora_modules, merge_lora, merged_state_dict
from sam_core.jobs.samples import shapes_training_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = {"sam": ROOT / "weights" / "sam_vit_tiny_shapes.safetensors",
           "sam2": ROOT / "weights" / "sam2_hiera_test_shapes.safetensors"}


def load(family: str) -> sam_core.PromptableSegmenter:
    return sam_core.load_sam(WEIGHTS[family], dtype=torch.float32)


def features(model: sam_core.PromptableSegmenter, image: np.ndarray) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return encode_images(model, [image]).features


@pytest.mark.parametrize("family", ["sam", "sam2"])
def test_merged_weights_compute_what_the_adapters_compute(family: str) -> None:
    model = load(family)
    image = shapes_training_images(1, seed=0, sizes=[(150, 230)])[0].load_image()
    plain = features(model, image)
    torch.manual_seed(0)
    names = add_lora(model, rank=2, alpha=4.0)
    assert names and all(name.endswith("qkv") and name.startswith("image_encoder.") for name in names)
    for module in lora_modules(model).values():
        torch.nn.init.normal_(module.lora_b, std=0.05)  # a trained-looking, non-zero update
    adapted = features(model, image)
    assert max((adapted[k] - plain[k]).abs().max() for k in plain) > 1e-3  # the adapters do something

    merged = load(family)
    merged.load_state_dict(merged_state_dict(model))  # plain names, strict
    for name, tensor in features(merged, image).items():
        torch.testing.assert_close(tensor, adapted[name], rtol=1e-4, atol=1e-5)
    merge_lora(model)
    assert not lora_modules(model)
    assert set(model.state_dict()) == set(merged.state_dict())
    for name, tensor in features(model, image).items():
        torch.testing.assert_close(tensor, adapted[name], rtol=1e-4, atol=1e-5)


def test_an_adapter_starts_as_the_identity_and_merges_by_formula() -> None:
    base = torch.nn.Linear(3, 4)
    adapter = LoRALinear(base, rank=2, alpha=6.0)
    x = torch.randn(5, 3)
    torch.testing.assert_close(adapter(x), base(x))  # B starts at zero
    with torch.no_grad():
        adapter.lora_b.copy_(torch.arange(8.0).view(4, 2))
    expected = base.weight + 3.0 * adapter.lora_b @ adapter.lora_a  # alpha / rank = 3
    torch.testing.assert_close(adapter.merged_weight(), expected)
    torch.testing.assert_close(adapter(x), x @ expected.T + base.bias)
    assert not base.weight.requires_grad and adapter.lora_a.requires_grad


def test_a_lora_run_trains_only_the_adapters_and_saves_a_plain_checkpoint(tmp_path: Path) -> None:
    images = shapes_training_images(3, seed=7)
    model = load("sam")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    calls: list[int] = []
    encode = model.encode
    model.encode = lambda batch: calls.append(batch.shape[0]) or encode(batch)  # type: ignore[method-assign]
    config = FinetuneConfig(steps=2, images_per_step=2, eval_every=2, learning_rate=1e-3, warmup_steps=0,
                            correction_points=1, train=("lora",))
    result = sam_core.finetune(model, images[:2], images[2:], tmp_path / "out", config,
                               cache_dir=tmp_path / "cache", progress=False, compare=False)
    # No cache: 2 steps x 2 images, plus the validation image at steps 0 and 2.
    assert sum(calls) == 2 * 2 + 2
    assert not (tmp_path / "cache").exists()
    last = load_file(result.last_path)
    assert set(last) == set(base)  # plain names, no adapter tensors
    changed = {name for name in base if not torch.equal(base[name], last[name])}
    assert changed and all(name.endswith("attn.qkv.weight") for name in changed)
    assert not lora_modules(result.model) and all(p.requires_grad for p in result.model.parameters())
    image = images[2].load_image()
    reloaded = sam_core.Predictor(sam_core.load_sam(result.best_path))
    in_memory = sam_core.Predictor(result.model)
    for predictor in (reloaded, in_memory):
        predictor.set_image(image)
    prompt = {"point_coords": np.array([[100.0, 80.0]]), "point_labels": np.array([1])}
    for got, expected in zip(reloaded.predict(**prompt), in_memory.predict(**prompt)):
        np.testing.assert_array_equal(got, expected)

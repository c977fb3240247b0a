"""The embedding cache: one encoder pass per image, ever; a new key for any change the features depend on;
interrupted builds resume; fp16 storage; SAM 2's several feature maps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import sam_core
from sam_core.finetune.cache import CachedPredictor, EmbeddingCache, encoder_fingerprint
from sam_core.finetune.config import FinetuneConfig
from sam_core.jobs.samples import shapes_training_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
SAM_WEIGHTS = ROOT / "weights" / "sam_vit_tiny_shapes.safetensors"
SAM2_WEIGHTS = ROOT / "weights" / "sam2_hiera_test_shapes.safetensors"


def count_encoder_calls(model: sam_core.PromptableSegmenter) -> list[int]:
    """Wrap the model's encode; the returned list holds the number of images encoded per call."""
    calls: list[int] = []
    encode = model.encode

    def counted(images: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(images.shape[0])
        return encode(images)

    model.encode = counted  # type: ignore[method-assign]
    return calls


def test_a_second_run_on_the_same_data_never_calls_the_encoder(tmp_path: Path) -> None:
    images = shapes_training_images(4, seed=5)
    train, val = images[:3], images[3:]
    config = FinetuneConfig(steps=2, eval_every=2, correction_points=1)
    totals = []
    for run in range(2):
        model = sam_core.load_sam(SAM_WEIGHTS)
        calls = count_encoder_calls(model)
        sam_core.finetune(model, train, val, tmp_path / f"run{run}", config, cache_dir=tmp_path / "cache",
                          progress=False)
        totals.append(sum(calls))
    # Each image once in the first run (its validation and before/after evaluation read the cache too), never again.
    assert totals == [4, 0]


def test_the_key_changes_with_everything_the_features_depend_on(tmp_path: Path) -> None:
    model = sam_core.load_sam(SAM_WEIGHTS)
    image = shapes_training_images(1, seed=0)[0].load_image()
    cache = EmbeddingCache(model, tmp_path)
    key = cache.key(image)
    assert EmbeddingCache(sam_core.load_sam(SAM_WEIGHTS), tmp_path).key(image.copy()) == key

    changed = image.copy()
    changed[0, 0, 0] ^= 1
    assert cache.key(changed) != key
    assert cache.key(np.ascontiguousarray(image.transpose(1, 0, 2))) != key  # same bytes, other shape

    with torch.no_grad():
        model.mask_decoder.iou_token.weight.add_(1.0)
    assert EmbeddingCache(model, tmp_path).key(image) == key  # the decoder is not part of the features
    with torch.no_grad():
        model.image_encoder.blocks[0].attn.qkv.weight[0, 0] += 1e-6
    assert EmbeddingCache(model, tmp_path).key(image) != key
    other_size = sam_core.build_sam(sam_core.SamConfig(**{**model.config.to_dict(), "image_size": 128}))
    assert encoder_fingerprint(other_size) != encoder_fingerprint(model)
    assert encoder_fingerprint(model.to(torch.float64)) != encoder_fingerprint(model.to(torch.float32))


def test_an_interrupted_build_continues_with_the_missing_images(tmp_path: Path) -> None:
    arrays = [image.load_image() for image in shapes_training_images(5, seed=1)]
    model = sam_core.load_sam(SAM_WEIGHTS)
    calls = count_encoder_calls(model)

    def interrupted() -> Iterator[np.ndarray]:
        yield from arrays[:3]
        raise KeyboardInterrupt

    cache = EmbeddingCache(model, tmp_path, batch_size=1)
    with pytest.raises(KeyboardInterrupt):
        cache.build(interrupted(), progress=False)
    assert sum(calls) == 3
    keys = cache.build(arrays, progress=False)
    assert sum(calls) == 5  # only the two missing ones
    assert all(cache.path(key).is_file() for key in keys)
    assert not list(cache.directory.glob(".*tmp"))  # no partial files left
    # The cached features are the encoder's.
    with torch.no_grad():
        predictor = sam_core.Predictor(model)
        predictor.set_image(arrays[4])
    assert torch.equal(cache.load(keys[4]).features["image_embeddings"], predictor.features)


def test_float16_storage_halves_the_files_and_reads_back_in_the_model_dtype(tmp_path: Path) -> None:
    model = sam_core.load_sam(SAM_WEIGHTS)
    image = shapes_training_images(1, seed=2)[0].load_image()
    full, half = EmbeddingCache(model, tmp_path / "full"), EmbeddingCache(model, tmp_path / "half", torch.float16)
    (full_key,), (half_key,) = full.build([image], progress=False), half.build([image], progress=False)
    with safe_open(str(half.path(half_key)), framework="pt") as handle:
        assert handle.get_tensor("image_embeddings").dtype == torch.float16
    assert half.path(half_key).stat().st_size < 0.6 * full.path(full_key).stat().st_size
    exact, rounded = full.load(full_key).features["image_embeddings"], half.load(half_key).features["image_embeddings"]
    assert rounded.dtype == torch.float32
    torch.testing.assert_close(rounded, exact, rtol=1e-3, atol=1e-3)


def test_sam2_features_go_through_the_cache_unchanged(tmp_path: Path) -> None:
    model = sam_core.load_sam(SAM2_WEIGHTS)
    image = shapes_training_images(1, seed=3, sizes=[(180, 240)])[0].load_image()
    cache = EmbeddingCache(model, tmp_path)
    (key,) = cache.build([image], progress=False)
    features = cache.load(key).features
    assert {name: tuple(f.shape[1:]) for name, f in features.items()} == model.feature_shapes
    assert len(features) == 3  # the embedding and two high-resolution maps
    plain, cached = sam_core.Predictor(model), CachedPredictor(model, cache)
    plain.set_image(image)
    calls = count_encoder_calls(model)
    cached.set_image(image)
    assert calls == []
    prompt = {"point_coords": np.array([[100.0, 90.0]]), "point_labels": np.array([1])}
    for got, expected in zip(cached.predict(**prompt), plain.predict(**prompt)):
        np.testing.assert_array_equal(got, expected)

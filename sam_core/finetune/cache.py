"""Embedding cache: the frozen image encoder runs once per image, and fine-tuning reads its features from disk, one
``sam_core.io.embeddings`` file per image named by a hash of everything the features depend on (encoder weights
and buffers, family, config, transform, dtype, pixels), written atomically.

Design notes: docs/finetune.md."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sam_core.finetune.parts import IMAGE_ENCODER, role_of
from sam_core.interface import PromptableSegmenter
from sam_core.io.embeddings import StoredFeatures, load_features, save_features
from sam_core.pipelines.predictor import Predictor
from sam_core.transforms import to_rgb_uint8

CACHE_FORMAT = "sam_core.embedding_cache.v1"
Size = tuple[int, int]


def _update_with_tensor(digest: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b"")


def encoder_fingerprint(model: PromptableSegmenter) -> str:
    """sha256 of what a model's image features depend on, apart from the image (see docs/finetune.md)."""
    digest = hashlib.sha256()
    config = json.dumps(model.config.to_dict(), sort_keys=True) if model.config is not None else "none"
    transform = model.transform
    digest.update(f"{CACHE_FORMAT}|{model.family}|{config}|{type(transform).__module__}."
                  f"{type(transform).__qualname__}|{transform.target_length}|{model.dtype}|".encode())
    for name, parameter in model.named_parameters():
        if role_of(model, name) == IMAGE_ENCODER:
            _update_with_tensor(digest, name, parameter)
    for name, buffer in model.named_buffers():
        _update_with_tensor(digest, name, buffer)
    return digest.hexdigest()


def encode_images(model: PromptableSegmenter, images: Sequence[np.ndarray]) -> StoredFeatures:
    """Run the model's own preprocessing and encoder on RGB images (any sizes) in one batch. Gradients flow
    when the caller has them enabled (LoRA on the encoder)."""
    inputs, original_sizes, input_sizes = [], [], []
    for image in images:
        rgb = to_rgb_uint8(image)
        if model.image_format == "BGR":
            rgb = rgb[:, :, ::-1]
        resized = torch.as_tensor(model.transform.apply_image(rgb), device=model.device).permute(2, 0, 1)
        inputs.append(model.preprocess(resized[None]))
        original_sizes.append((int(rgb.shape[0]), int(rgb.shape[1])))
        input_sizes.append((int(resized.shape[1]), int(resized.shape[2])))
    return StoredFeatures(model.encode(torch.cat(inputs)), original_sizes, input_sizes)


class EmbeddingCache:
    """Image features of one model, stored on disk by content hash.

    Args:
        model: the model whose ``encode`` fills the cache. Its image encoder is hashed once, here: change its
            weights afterwards and build a new cache.
        directory: where the files go (a folder per encoder fingerprint is made inside; several models and
            datasets can share one directory).
        storage_dtype: dtype of the stored features (None: the model's; ``torch.float16`` halves the files).
        batch_size: images encoded together when building.
    """

    def __init__(self, model: PromptableSegmenter, directory: str | os.PathLike,
                 storage_dtype: torch.dtype | None = None, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.fingerprint = encoder_fingerprint(model)
        self.directory = Path(directory) / self.fingerprint[:16]
        self.storage_dtype = storage_dtype
        self.batch_size = batch_size

    def key(self, image: np.ndarray) -> str:
        """The name of an image's features: sha256 of the encoder fingerprint and the pixels."""
        pixels = np.ascontiguousarray(image)
        digest = hashlib.sha256(f"{self.fingerprint}|{pixels.dtype}|{pixels.shape}|".encode())
        digest.update(pixels)
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def build(self, images: Iterable[np.ndarray], total: int | None = None, progress: bool = True) -> list[str]:
        """Keys of the images' features, encoding those not on disk yet (``batch_size`` at a time)."""
        keys: list[str] = []
        pending: list[tuple[str, np.ndarray]] = []
        written = 0
        bar = tqdm(images, total=total, desc="embedding cache", unit="image", disable=not progress or None)
        for image in bar:
            key = self.key(image)
            keys.append(key)
            if not self.path(key).is_file() and key not in (k for k, _ in pending):
                pending.append((key, image))
            if len(pending) >= self.batch_size:
                written += self._write(pending)
                pending = []
            bar.set_postfix(encoded=written, refresh=False)
        if pending:
            self._write(pending)
        return keys

    def load(self, key: str) -> StoredFeatures:
        """One image's features (batch of one) on the model's device, in its dtype."""
        model = self.model
        stored = load_features(self.path(key), model.family, model.config, model.feature_shapes)
        stored.features = {name: f.to(model.device, model.dtype) for name, f in stored.features.items()}
        return stored

    def _write(self, pending: list[tuple[str, np.ndarray]]) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            encoded = encode_images(self.model, [image for _, image in pending])
        for index, (key, _) in enumerate(pending):
            features = {name: f[index:index + 1] for name, f in encoded.features.items()}
            if self.storage_dtype is not None:
                features = {name: f.to(self.storage_dtype) for name, f in features.items()}
            one = StoredFeatures(features, encoded.original_sizes[index:index + 1],
                                 encoded.input_sizes[index:index + 1])
            save_features(self.path(key), one, self.model.family, self.model.config)  # atomically
        return len(pending)


class CachedPredictor(Predictor):
    """A ``Predictor`` whose ``set_image`` reads the image's features from an ``EmbeddingCache`` when they are
    there (encoding it otherwise), so that evaluating a fine-tuned decoder does not rerun the frozen encoder.

    Args:
        model: the model being fine-tuned (its image encoder must be the one the cache was built with).
        cache: the cache.
    """

    def __init__(self, model: PromptableSegmenter, cache: EmbeddingCache) -> None:
        super().__init__(model)
        self.cache = cache

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        path = self.cache.path(self.cache.key(to_rgb_uint8(image, image_format)))
        if path.is_file():
            self.load_embedding(path)
        else:
            super().set_image(image, image_format)

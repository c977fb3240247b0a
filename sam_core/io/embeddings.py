"""Image features on disk: compute the expensive encoder pass once, prompt the image later.

A file is safetensors: one tensor per named feature (``Predictor.features_by_name``), and in the metadata the
images' original and resized sizes, the model family and its config, so that a file is never used with a
model that did not compute it, and a CRC-32 of the whole content (``sam_core.io.checkpoints.content_checksum``), so
that a damaged file fails to load instead of prompting the image with other features. Files are written
atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from sam_core.interface import ImageFeatures
from sam_core.io.checkpoints import CHECKSUM_KEY, content_checksum
from sam_core.io.files import write_atomically

EMBEDDING_FORMAT = "sam_core.image_embedding.v1"
Size = tuple[int, int]


@dataclass
class StoredFeatures:
    """What an embedding file holds."""

    features: ImageFeatures  # batch first, one row per image
    original_sizes: list[Size]
    input_sizes: list[Size]


def save_features(path: str | PathLike, stored: StoredFeatures, family: str, config: Any | None) -> None:
    """Write features and image sizes of the images a model encoded to ``path``."""
    metadata = {
        "format": EMBEDDING_FORMAT,
        "family": family,
        "original_sizes": json.dumps([list(s) for s in stored.original_sizes]),
        "input_sizes": json.dumps([list(s) for s in stored.input_sizes]),
    }
    if config is not None:
        metadata["config"] = json.dumps(config.to_dict(), sort_keys=True)
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in stored.features.items()}
    metadata[CHECKSUM_KEY] = content_checksum(tensors, metadata)
    write_atomically(Path(path), lambda temp_path: save_file(tensors, str(temp_path), metadata=metadata))


def load_features(path: str | PathLike, family: str, config: Any | None, feature_shapes: dict[str, tuple[int, ...]],
                  ) -> StoredFeatures:
    """Read what ``save_features`` wrote, checking that it was computed by a model of this family and config.

    ``feature_shapes``: each feature's shape without the batch axis, as the model computes it.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"embedding file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            features = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises several types for a damaged or foreign file
        raise ValueError(f"cannot read embedding file {path}: {error}") from error
    if metadata.get("format") != EMBEDDING_FORMAT or not features:
        raise ValueError(f"{path} is not a sam_core embedding file (written by save_embedding)")
    stored_checksum = metadata.get(CHECKSUM_KEY)  # absent in files written before sam_core stored it
    if stored_checksum is not None and stored_checksum != content_checksum(features, metadata):
        raise ValueError(f"{path}: damaged embedding file: its content does not match the CRC-32 stored in it; "
                         "compute the embedding again")
    stored_family = metadata.get("family", "sam")
    if stored_family != family:
        raise ValueError(f"{path} holds {stored_family} features, not features of this {family} model")
    if config is not None and "config" in metadata:
        if metadata["config"] != json.dumps(config.to_dict(), sort_keys=True):
            raise ValueError(f"{path} was computed by a model with config {metadata['config']}, "
                             f"not this predictor's model ({config})")
    original_sizes = [tuple(s) for s in json.loads(metadata["original_sizes"])]
    input_sizes = [tuple(s) for s in json.loads(metadata["input_sizes"])]
    found = {name: tuple(tensor.shape[1:]) for name, tensor in features.items()}
    counts = {len(tensor) for tensor in features.values()}
    if found != feature_shapes or counts != {len(original_sizes)} or len(input_sizes) != len(original_sizes):
        raise ValueError(f"{path}: features {found} for {len(original_sizes)} image sizes do not fit this model "
                         f"(expected B x {feature_shapes})")
    return StoredFeatures(features, original_sizes, input_sizes)  # type: ignore[arg-type]

"""Damaged checkpoints: cut short at any offset, or with any byte changed, a file gives ``CheckpointError`` and
never another exception.

What can be detected differs by format (the reliability notes in docs/):
- sam_core's own safetensors (``save_sam``) carry a CRC-32 of their metadata and tensors: every truncation
  and every changed byte fails to load, except bytes that change nothing the model is built from (JSON
  whitespace, the spelling of the checksum's own key), which load the identical model.
- Meta ``.pth`` files are zip archives whose entries carry a CRC-32, which torch.load ignores and load_sam
  checks, so they behave the same.
- Hugging Face folders: ``model.safetensors`` has no checksum, so a changed byte inside the tensor data loads
  (other weights: undetectable); everywhere else in the file it fails or loads the identical model. A changed
  byte in ``config.json`` fails, or loads a config that still fits the weights (say, another head count).
Offsets are seeded: the same damage on every run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from make_shapes_model import DEFAULT_OUTPUT as SHAPES_WEIGHTS
from safetensors.torch import load_file

from sam_core import CheckpointError, load_sam, save_sam
from sam_core.models.sam.parity import make_hf_sam

TRUNCATIONS = 40  # random offsets per file, besides the structural ones (header length, header end, ...)
FLIPS = 80  # random changed bytes per file, besides every byte of the first 16


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def same_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def load_outcome(source: Path, original: dict[str, torch.Tensor], original_config: object) -> str:
    """'error' (CheckpointError), 'identical' or 'different'; any other exception fails the test."""
    try:
        model = load_sam(source)
    except CheckpointError:
        return "error"
    if same_state(state_of(model), original) and model.config == original_config:
        return "identical"
    return "different"


def safetensors_data_start(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def offsets(rng: np.random.Generator, size: int, count: int, structural: list[int]) -> list[int]:
    return sorted({o for o in structural if 0 <= o < size} | set(rng.integers(0, size, count).tolist()))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Format -> (the file to damage, what load_sam is given), written fresh for this test."""
    root = tmp_path_factory.mktemp("pristine")
    own = save_sam(load_sam(SHAPES_WEIGHTS), root / "own.safetensors")
    pth = root / "sam_vit_tiny.pth"
    torch.save(load_file(str(SHAPES_WEIGHTS)), pth)
    make_hf_sam("vit_tiny", seed=0).save_pretrained(root / "hf")
    return {"own_safetensors": (own, own), "meta_pth": (pth, pth),
            "hf_weights": (root / "hf" / "model.safetensors", root / "hf"),
            "hf_config": (root / "hf" / "config.json", root / "hf")}


def damaged_copy(pristine: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the checkpoint (folder included) to damage: (file to damage, what to load)."""
    target, source = pristine
    if source.is_dir():
        copy = tmp_path / source.name
        shutil.copytree(source, copy)
        return copy / target.name, copy
    copy = tmp_path / source.name
    shutil.copyfile(source, copy)
    return copy, copy


@pytest.mark.parametrize("fmt", ["own_safetensors", "meta_pth", "hf_weights", "hf_config"])
def test_truncated_checkpoints_always_raise_checkpoint_error(checkpoints, fmt, tmp_path):
    target, source = damaged_copy(checkpoints[fmt], tmp_path)
    data = target.read_bytes()
    structural = [0, 1, 7, 8, 9, len(data) // 2, len(data) - 1]
    if fmt != "hf_config" and fmt != "meta_pth":
        start = safetensors_data_start(data)
        structural += [start - 1, start, start + 1]
    cuts = offsets(np.random.default_rng(len(data)), len(data), TRUNCATIONS, structural)
    original_model = load_sam(source)
    original, original_config = state_of(original_model), original_model.config
    for cut in cuts:
        target.write_bytes(data[:cut])
        outcome = load_outcome(source, original, original_config)
        # Only a JSON file's final newline can go without loss.
        assert outcome == "error" or (outcome == "identical" and not data[cut:].strip()), f"cut at {cut}: {outcome}"


@pytest.mark.parametrize("fmt", ["own_safetensors", "meta_pth", "hf_weights", "hf_config"])
def test_changed_bytes_raise_checkpoint_error_or_load_what_the_format_cannot_check(checkpoints, fmt, tmp_path):
    target, source = damaged_copy(checkpoints[fmt], tmp_path)
    original_model = load_sam(source)
    original, original_config = state_of(original_model), original_model.config
    data = target.read_bytes()
    rng = np.random.default_rng(len(data) + 1)
    positions = offsets(rng, len(data), FLIPS, list(range(16)))
    if fmt == "hf_weights":
        unchecked = [(safetensors_data_start(data), len(data))]  # tensor bytes: no checksum in this format
    else:
        unchecked = []
    outcomes = {"error": 0, "identical": 0, "different": 0}
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= int(rng.integers(1, 256))
        target.write_bytes(bytes(damaged))
        outcome = load_outcome(source, original, original_config)
        outcomes[outcome] += 1
        if outcome == "different":
            in_unchecked_data = any(start <= position < end for start, end in unchecked)
            assert in_unchecked_data or fmt == "hf_config", f"{fmt}: byte {position} changed loads another model"
    assert outcomes["error"]  # the damage was noticed, not just survived


def test_own_files_store_a_checksum_of_weights_and_config(checkpoints):
    from safetensors import safe_open

    from sam_core.io.checkpoints import CHECKSUM_KEY, content_checksum

    path, _ = checkpoints["own_safetensors"]
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    assert metadata[CHECKSUM_KEY] == content_checksum(tensors, metadata)
    config = json.loads(metadata["sam_core.config"])
    config["encoder_num_heads"] = 4  # a config that still fits the weights: only the checksum tells
    assert content_checksum(tensors, {**metadata, "sam_core.config": json.dumps(config)}) != metadata[CHECKSUM_KEY]


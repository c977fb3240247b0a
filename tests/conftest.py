"""Shared fixtures: Meta's reference model on random weights, written in its own .pth format.

Parity tests build the reference (`segment_anything==1.0`) from a SamConfig, perturb every parameter so
that zero- or one-initialised tensors (relative positions, biases, norms) are exercised too, save its
state dict as Meta does, and load that file into sam_core.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sam_core.config import SAM_CONFIGS, SamConfig
from sam_core.parity import make_reference_sam, save_reference_pth  # noqa: F401 (re-exported to tests)


@pytest.fixture(scope="session")
def tiny_config() -> SamConfig:
    return SAM_CONFIGS["vit_tiny"]


@pytest.fixture(scope="session")
def tiny_reference(tiny_config: SamConfig) -> torch.nn.Module:
    return make_reference_sam(tiny_config, seed=0)


@pytest.fixture(scope="session")
def tiny_pth(tiny_reference: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_reference_pth(tiny_reference, tmp_path_factory.mktemp("ckpt") / "sam_vit_tiny.pth")


@pytest.fixture
def one_torch_thread() -> object:
    """Run a test on one torch thread: tiny models' operations are too small to gain from more, and on a
    machine whose cores are busy, threads waiting for each other make them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

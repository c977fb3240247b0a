"""Shared fixtures: Meta's reference model on random weights, written in its own .pth format.

Parity tests build the reference (`segment_anything==1.0`) from a SamConfig, perturb every parameter so
that zero- or one-initialised tensors (relative positions, biases, norms) are exercised too, save its
state dict as Meta does, and load that file into sam_core.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from sam_core.models.sam.config import SAM_CONFIGS, SamConfig
from sam_core.models.sam.parity import make_reference_sam, save_reference_pth

# Property-based tests run the same examples on every machine (derandomize: seeded from each test's source),
# without time limits (shared CI cores are slow and uneven) and without an example database on disk. Each test
# sets its own small max_examples; HYPOTHESIS_PROFILE=explore runs them with fresh random examples instead.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("explore", parent=settings.get_profile("ci"), derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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

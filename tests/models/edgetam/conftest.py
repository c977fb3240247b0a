"""Where Meta's EdgeTAM reference is installed (``pip install --no-deps --target .refs/edgetam
edgetam-dimos==1.0.1``, as .ci/run does): ``SAM_CORE_EDGETAM_REF`` or ``.refs/edgetam`` in the repository. CI sets
``SAM_CORE_REQUIRE_REFERENCES=1``, which turns a missing reference into a failure instead of a skip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from edgetam_case import CONFIG, PROMPTS, STEPS, draw_clip

from sam_core.models.edgetam.parity import run_meta_reference

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def edgetam_reference_dir() -> Path:
    path = Path(os.environ.get("SAM_CORE_EDGETAM_REF", ROOT / ".refs" / "edgetam"))
    if not (path / "sam2" / "modeling" / "perceiver.py").is_file():
        message = (f"Meta's EdgeTAM reference is not installed at {path}: run "
                   "`pip install --no-deps --target .refs/edgetam edgetam-dimos==1.0.1` (or set SAM_CORE_EDGETAM_REF)")
        if os.environ.get("SAM_CORE_REQUIRE_REFERENCES"):
            pytest.fail(message)
        pytest.skip("SKIPPED, NOT TESTED: " + message)
    return path


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 180x240 crop of scikit-image's astronaut: a non-square photo."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:280, 150:390])


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return draw_clip(tmp_path_factory.mktemp("edgetam_clip") / "frames")


@pytest.fixture(scope="session")
def meta(edgetam_reference_dir, photo, clip, tmp_path_factory) -> dict:
    """Meta's EdgeTAM with CONFIG's shapes, built once (in a subprocess): its ``edgetam.pt``, its image predictor's
    outputs on the photo and PROMPTS, its video predictor's masks on the clip and STEPS."""
    folder = tmp_path_factory.mktemp("meta_edgetam")
    np.save(folder / "photo.npy", photo)
    return run_meta_reference(edgetam_reference_dir, CONFIG, folder, seed=1,
                              image={"image": str(folder / "photo.npy"), "prompts": PROMPTS},
                              video={"frames": str(clip), "steps": STEPS})

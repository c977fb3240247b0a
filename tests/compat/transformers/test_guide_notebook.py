"""notebooks/transformers_guide.ipynb (the transformers mask-generation guide's snippets, on a transformers
``save_pretrained`` folder) run as it is and with transformers' imports instead of sam_core's: the pipeline's
masks and scores, the point and box prompts' outputs and post-processed masks, and the reused embedding's
outputs agree (scores and logits within 1e-4, masks but for pixels at the threshold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

NOTEBOOK = Path(__file__).resolve().parents[3] / "notebooks" / "transformers_guide.ipynb"
COMPAT_IMPORT = "from sam_core.compat.transformers import SamModel, SamProcessor, pipeline"
TRANSFORMERS_IMPORT = "from transformers import SamModel, SamProcessor, pipeline"


def run_guide(import_line: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The notebook's code cells in one namespace, with its import cell replaced by ``import_line``."""
    import matplotlib
    import nbformat

    matplotlib.use("Agg")
    monkeypatch.chdir(NOTEBOOK.parent)
    namespace: dict[str, Any] = {}
    for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
        if cell.cell_type == "code":
            source = import_line if cell.source.strip() == COMPAT_IMPORT else cell.source
            exec(compile(source, str(NOTEBOOK), "exec"), namespace)  # noqa: S102 (the repository's own notebook)
    return namespace


def test_guide_outputs_equal_transformers(monkeypatch: pytest.MonkeyPatch, one_torch_thread: object) -> None:
    assert COMPAT_IMPORT in NOTEBOOK.read_text()
    ours = run_guide(COMPAT_IMPORT, monkeypatch)
    theirs = run_guide(TRANSFORMERS_IMPORT, monkeypatch)
    assert type(theirs["model"]).__module__.startswith("transformers")
    assert type(ours["model"]).__module__.startswith("sam_core")
    assert len(ours["outputs"]["masks"]) == len(theirs["outputs"]["masks"]) >= 1
    assert (ours["outputs"]["scores"] - theirs["outputs"]["scores"]).abs().max() <= 1e-4
    for mine, expected in zip(ours["outputs"]["masks"], theirs["outputs"]["masks"]):
        assert (mine != expected).float().mean() <= 1e-4
    for name in ("point_outputs", "box_outputs", "reused_outputs"):
        for field in ("iou_scores", "pred_masks"):
            assert (getattr(ours[name], field) - getattr(theirs[name], field)).abs().max() <= 1e-4, (name, field)
    for name in ("masks_point", "masks_box"):
        assert ours[name][0].dtype == theirs[name][0].dtype == torch.bool
        assert (ours[name][0] != theirs[name][0]).float().mean() <= 1e-4, name

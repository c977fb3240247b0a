"""Record comparisons shared by the generator parity tests (a module, not conftest: each test folder's
conftest.py is imported under the same name, so ``from conftest import`` would reach whichever came last)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def assert_records_equal(ours: list[dict[str, Any]], theirs: list[dict[str, Any]],
                         score_tolerance: float = 0.0) -> None:
    """``assert_records_identical`` where NaN equals NaN: with the filters off, masks with no pixel above
    ``mask_threshold - stability_score_offset`` keep their 0 / 0 stability score."""
    assert len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs):
        assert mine.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, float):
                assert mine[key] == pytest.approx(value, abs=score_tolerance, nan_ok=True), key
            else:
                np.testing.assert_equal(mine[key], value, err_msg=key)

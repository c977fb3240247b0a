"""The OpenMP wait policy that ``import sam_core`` sets, as torch's OpenMP runtime reports it in a fresh process
(``OMP_DISPLAY_ENV=verbose`` makes libgomp print the settings it took when torch loaded)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def spin_count(code: str, **environment: str) -> int:
    """GOMP_SPINCOUNT as libgomp reports it after running ``code``: 0 when threads sleep at once (passive)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OMP_", "GOMP_"))}
    env.update(OMP_DISPLAY_ENV="verbose", PYTHONPATH=str(REPOSITORY), **environment)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    found = re.search(r"GOMP_SPINCOUNT = '(\d+)'", completed.stderr)
    if found is None:
        pytest.fail(f"torch's OpenMP runtime printed no GOMP_SPINCOUNT: {completed.stderr[-500:]}")
    return int(found.group(1))


def test_importing_sam_core_first_makes_torchs_threads_wait_passively():
    assert spin_count("import sam_core") == 0


def test_a_policy_the_user_set_is_kept():
    assert spin_count("import sam_core", OMP_WAIT_POLICY="ACTIVE") > 0


def test_torch_imported_first_keeps_its_default_and_sam_core_says_so():
    code = "import torch, sam_core; assert not sam_core.openmp_wait.applies_to_this_process"
    assert spin_count(code) > 0
    assert spin_count("import sam_core; assert sam_core.openmp_wait.applies_to_this_process") == 0

"""OpenMP's wait policy for torch's CPU threads: passive, unless the user set one.

By default the threads of torch's OpenMP pool spin after each parallel region, waiting for the next one. On a
quiet machine that saves a wake-up per region; on a shared one (a browser, an editor, a second request of the
web app) the spinning threads take the cores the working thread needs, and every region waits for whichever
thread was descheduled. Passive waiting puts idle threads to sleep instead. The measured cost and gain per
policy, quiet and beside a competing process, are in docs/benchmarks.md (``benchmarks/busy_machine.py``).

OpenMP reads the policy once, when torch loads, so it only applies to a process that imports ``sam_core``
before ``torch``: ``sam_core/__init__.py`` imports this module first, and every console script does so.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"


def prefer_passive_wait() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already names a policy.

    Returns:
        Whether the policy in the environment takes effect in this process: False when torch was imported
        before (its OpenMP runtime has read the variable already).
    """
    os.environ.setdefault(WAIT_POLICY_ENV, DEFAULT_WAIT_POLICY)
    return "torch" not in sys.modules


applies_to_this_process = prefer_passive_wait()

"""keep_freed_memory: freed large activations are reused instead of being unmapped and faulted in again."""

from __future__ import annotations

import subprocess
import sys

# Three ViT-B-sized MLP passes (a 50 MB hidden activation each), counting page faults after a warm-up pass.
PROBE = """
import resource, sys, torch
import sam_core
torch.set_grad_enabled(False)
if sys.argv[1] == "tuned":
    assert sam_core.keep_freed_memory()
lin1, lin2 = torch.nn.Linear(768, 3072), torch.nn.Linear(3072, 768)
x = torch.randn(4096, 768)
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        lin2(torch.nn.functional.gelu(lin1(x)))
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(faults())
"""


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


def test_keep_freed_memory_stops_refaulting_activations():
    hidden_pages = 4096 * 3072 * 4 // 4096
    assert page_faults("default") >= hidden_pages  # by default every pass maps fresh pages
    assert page_faults("tuned") < hidden_pages // 10

"""Speed settings: keep_freed_memory stops re-faulting activations (sam-amg turns it on unless
SAM_CORE_KEEP_FREED_MEMORY=0; the library never changes it behind the user's back); int8 keeps masks close."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

# Three ViT-B-sized MLP passes (a 50 MB hidden activation each), counting page faults after a warm-up pass.
PROBE = """
import resource, sys, torch
import sam_core
torch.set_grad_enabled(False)
if sys.argv[1] == "tuned":
    assert sam_core.keep_freed_memory()
elif sys.argv[1] == "predictor":
    sam_core.Predictor(sam_core.build_sam("vit_tiny"))
elif sys.argv[1] == "generator":
    sam_core.AutomaticMaskGenerator(sam_core.build_sam("vit_tiny"))
elif sys.argv[1] == "sam-amg":
    import pathlib, tempfile, cv2, numpy as np
    from sam_core.cli import amg_main
    folder = pathlib.Path(tempfile.mkdtemp())
    cv2.imwrite(str(folder / "image.png"), np.zeros((16, 16, 3), np.uint8))
    assert amg_main(["--input", str(folder / "image.png"), "--output", str(folder / "out"), "--points-per-side",
                     "1", "--checkpoint", sys.argv[2]]) == 0
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


HIDDEN_PAGES = 4096 * 3072 * 4 // 4096


SHAPES_MODEL = str(Path(__file__).resolve().parents[1] / "weights" / "sam_vit_tiny_shapes.safetensors")


def page_faults(mode: str, **env: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE, mode, SHAPES_MODEL], capture_output=True, text=True,
                            check=True,
                            env={**os.environ, **env})
    return int(result.stdout.split()[-1])  # the last line; sam-amg prints its summary before


def test_keep_freed_memory_stops_refaulting_activations():
    assert page_faults("untouched") >= HIDDEN_PAGES  # glibc's own setting: every pass maps fresh pages
    assert page_faults("tuned") < HIDDEN_PAGES // 10


def test_library_leaves_malloc_alone_and_sam_amg_tunes_it_unless_told_not_to():
    assert page_faults("predictor") >= HIDDEN_PAGES
    assert page_faults("generator") >= HIDDEN_PAGES
    assert page_faults("sam-amg") < HIDDEN_PAGES // 10
    assert page_faults("sam-amg", SAM_CORE_KEEP_FREED_MEMORY="0") >= HIDDEN_PAGES


def test_int8_encoder_keeps_the_masks_of_the_exact_path():
    """Approximate mode: on the prompt-sensitive shapes model, int8 masks overlap the fp32 masks closely."""
    import numpy as np
    from make_shapes_model import DEFAULT_OUTPUT, draw_shapes_image

    import sam_core

    image, _ = draw_shapes_image(np.random.default_rng(4), 200, 300, n_shapes=5)
    points = np.array([[x, y] for y in (50, 100, 150) for x in (60, 150, 240)])
    exact = sam_core.Predictor(sam_core.load_sam(DEFAULT_OUTPUT))
    quantized = sam_core.Predictor(sam_core.quantize_encoder_int8(sam_core.load_sam(DEFAULT_OUTPUT)))
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in quantized.model.modules())
    exact.set_image(image)
    quantized.set_image(image)
    assert not torch.equal(exact.features, quantized.features)  # the mode really changed the computation
    ious = []
    for point in points:
        masks, _, _ = exact.predict(point[None], np.array([1]), multimask_output=False)
        approx, _, _ = quantized.predict(point[None], np.array([1]), multimask_output=False)
        union = (masks | approx).sum()
        ious.append((masks & approx).sum() / union if union else 1.0)
    assert np.mean(ious) >= 0.9

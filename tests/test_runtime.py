"""Speed settings: keep_freed_memory stops re-faulting activations (sam-amg turns it on unless
SAM_CORE_KEEP_FREED_MEMORY=0; the library never changes it behind the user's back); int8 keeps masks close."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

# Three ViT-B-sized MLP passes (a 50 MB hidden activation each), counting page faults after warm-up passes.
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
faults()  # warm-up passes: after sam-amg's run the heap's free blocks settle in two
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
    from sam_core.layers.int8_linear import Int8Linear

    image, _ = draw_shapes_image(np.random.default_rng(4), 200, 300, n_shapes=5)
    points = np.array([[x, y] for y in (50, 100, 150) for x in (60, 150, 240)])
    exact = sam_core.Predictor(sam_core.load_sam(DEFAULT_OUTPUT))
    quantized = sam_core.Predictor(sam_core.quantize_encoder_int8(sam_core.load_sam(DEFAULT_OUTPUT)))
    assert any(isinstance(m, Int8Linear) for m in quantized.model.modules())
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


def int8_error_bound(weight: torch.Tensor, weight_step: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Worst-case |int8 - float| of each output: every activation off by at most half its step, every weight
    by half of its row's step."""
    from sam_core.layers.int8_linear import activation_steps

    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    x_step = max((high - low) / activation_steps(), 1e-30)
    bound = x_step / 2 * weight.abs().sum(1) + x.abs().sum(1, keepdim=True) * weight_step / 2
    return (bound + x.shape[-1] * x_step * weight_step / 4) * 1.01 + 1e-4


@settings(max_examples=100)
@given(rows=st.integers(1, 40), in_features=st.integers(1, 48), out_features=st.integers(1, 40),
       low=st.floats(-1e4, 0), span=st.floats(0, 2e4), seed=st.integers(0, 2**31 - 1))
def test_int8_linear_stays_within_its_rounding_error(rows, in_features, out_features, low, span, seed):
    """Any finite input range (all-zero, one-signed, huge): int8 outputs are the float ones up to the rounding
    of the two quantisations, so no value ever wraps around the 8-bit range."""
    from sam_core.layers.int8_linear import Int8Linear

    generator = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(in_features, out_features)
    x = low + span * torch.rand(rows, in_features, generator=generator, dtype=torch.float64)
    x = x.float()
    x[0, 0] = low  # both ends of the range present
    x[-1, -1] = low + span
    layer = Int8Linear.from_float(linear)
    with torch.no_grad():
        error = (layer(x) - linear(x)).abs()
        assert (error <= int8_error_bound(linear.weight, layer.weight_scale, x)).all()


def test_int8_linear_keeps_shapes_and_refuses_what_it_cannot_quantise():
    from sam_core.layers.int8_linear import Int8Linear, quantize_linears_int8

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4, bias=False))
    x = torch.randn(2, 3, 5, 8).transpose(1, 2)  # 4-D and not contiguous, as the encoder's tokens can be
    with torch.no_grad():
        expected = model(x)
        quantize_linears_int8(model)
        got = model(x)
    assert [type(m) for m in model] == [Int8Linear, torch.nn.GELU, Int8Linear]
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=0.05)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(torch.full((1, 8), float("nan")))
    with pytest.raises(ValueError, match="float32"):
        model(torch.zeros(1, 8, dtype=torch.float64))


def test_int8_mode_uses_no_deprecated_quantization_api():
    """The mode moved off torch.ao.quantization.quantize_dynamic: quantising and running warn about nothing."""
    import sam_core

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sam = sam_core.quantize_encoder_int8(sam_core.build_sam("vit_tiny"))
        with torch.no_grad():
            sam.image_encoder(torch.zeros(1, 3, sam.image_size, sam.image_size))

"""Int8 linear layers for the opt-in approximate encoder mode (``sam_core.quantize_encoder_int8``).

Weights are quantised once, symmetric per output channel; activations are quantised on every call, per
tensor and asymmetric (uint8 with a zero point: the encoder's activations after GELU are mostly positive).
The product runs in oneDNN's int8 matrix kernel (``torch.ops.onednn.qlinear_pointwise``, the x86 kernel that
PyTorch's own int8 inference lowers to), which takes plain uint8/int8 tensors and returns float32 with the
bias added. This replaces ``torch.ao.quantization.quantize_dynamic``, which torch deprecates, and needs no
quantized tensor types; torchao's int8 dynamic mode was measured too, and in eager mode on the CPU it is no
faster than float32 (its quantisation steps run unfused), so it is not used.
"""

from __future__ import annotations

import functools
import math
import os
import sys

import torch
from torch import nn

# Adding 1.5 * 2**23 to a float32 in (-2**22, 2**22) leaves its value rounded half-to-even in the low mantissa
# bits, so the low byte of the float's bit pattern is that integer modulo 256: rounding and the conversion to
# 8 bits in one pass over the activations instead of three (scale, round, convert).
_ROUNDING_OFFSET = 1.5 * 2**23
# Activation steps below this would overflow their float32 reciprocal; inputs that small are zeros to int8.
_SMALLEST_SCALE = 1e-30
# oneDNN ISA limits under which its int8 kernel cannot use VNNI (``ONEDNN_MAX_CPU_ISA``).
_ISAS_WITHOUT_VNNI = frozenset({"SSE41", "AVX", "AVX2", "AVX512_CORE"})


@functools.cache
def activation_steps() -> int:
    """Quantisation steps of the activations: 254 (uint8) where oneDNN's int8 kernel accumulates in int32
    (VNNI), 126 (7 bits) elsewhere. Without VNNI the kernel adds pairs of uint8 x int8 products in saturating
    int16 (``vpmaddubsw``), and two products of up to 255 x 127 overflow it; with activations below 128 the pair
    stays below 32767. Read once per process, as oneDNN reads ``ONEDNN_MAX_CPU_ISA`` once."""
    vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()
    limited = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ISAS_WITHOUT_VNNI
    return 254 if vnni and not limited else 126


def int8_available() -> bool:
    """Whether this torch build has the oneDNN int8 kernels (x86 and aarch64 CPU builds do), on a little-endian
    machine (the byte trick in ``Int8Linear.forward``)."""
    return (sys.byteorder == "little" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.onednn, "qlinear_pointwise"))


class Int8Linear(nn.Module):
    """``nn.Linear`` on the CPU with int8 weights and dynamically quantised uint8 activations (approximate).

    Built from a float linear layer with :meth:`from_float`; its forward takes and returns float32 of the same
    shapes. No gradient flows through it.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        if not int8_available():
            raise RuntimeError("int8 mode needs PyTorch's oneDNN kernels (torch.backends.mkldnn), which this "
                               "torch build lacks")
        if weight.device.type != "cpu":
            raise ValueError(f"int8 mode runs on the CPU; the layer is on {weight.device}")
        weight = weight.detach().float()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127  # (out,)
        quantized = torch.round(weight / scale[:, None]).to(torch.int8)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero_point", torch.zeros(len(scale), dtype=torch.int64))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        # oneDNN's blocked layout, packed once; an opaque tensor that stays out of the state dict.
        self.packed_weight = torch.ops.onednn.qlinear_prepack(quantized, None)

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise ValueError(f"Int8Linear takes float32 input, got {x.dtype}")
        low, high = (float(v) for v in torch.aminmax(x))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("Int8Linear got NaN or infinite activations")
        low, high = min(low, 0.0), max(high, 0.0)  # zero must be exactly representable
        # ``steps`` steps and a zero point rounded up: low maps into [0, 1) and high into [steps, steps + 1), so
        # no value rounds outside 0..steps + 1 (at most 255, where the low byte would wrap around).
        scale = max((high - low) / activation_steps(), _SMALLEST_SCALE)
        zero_point = math.ceil(-low / scale)
        offset = torch.tensor(_ROUNDING_OFFSET + zero_point, dtype=torch.float32)
        shifted = torch.add(offset, x, alpha=1 / scale)  # x / scale + zero_point + offset: offset + [0, steps + 1]
        quantized = shifted.view(torch.int32).view(torch.uint8)[..., ::4].contiguous()  # low bytes (little-endian)
        return torch.ops.onednn.qlinear_pointwise(
            quantized, scale, zero_point, self.packed_weight, self.weight_scale, self.weight_zero_point, self.bias,
            1.0, 0, torch.float32, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_linears_int8(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` by an :class:`Int8Linear`, in place; returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear.from_float(child))
        else:
            quantize_linears_int8(child)
    return module

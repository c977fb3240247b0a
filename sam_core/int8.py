"""Old path, kept as a re-export: now ``sam_core.layers.int8_linear``."""

from sam_core.layers.int8_linear import (  # noqa: F401
    Int8Linear,
    int8_available,
    quantize_linears_int8,
)

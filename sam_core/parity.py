"""Old path, kept as a re-export: now ``sam_core.models.sam.parity``."""

from sam_core.models.sam.parity import (  # noqa: F401
    make_hf_sam,
    make_reference_sam,
    make_reference_sam_from,
    randomize_every_tensor_,
    save_reference_pth,
)

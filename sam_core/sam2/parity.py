"""Old path, kept as a re-export: now ``sam_core.models.sam2.parity``."""

from sam_core.models.sam2.parity import (  # noqa: F401
    REFERENCE_CONFIG_FILE,
    make_hf_sam2,
    make_reference_sam2,
    make_reference_video_predictor,
    randomize_,
    reference_decode,
    reference_image_features,
    reference_overrides,
    reference_video_on_cpu,
    save_reference_pt,
    video_overrides,
)

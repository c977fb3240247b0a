"""Sam3Video: SAM 3's tracker for video, i.e. SAM 2.1's memory attention, memory encoder and object pointers
(:class:`~sam_core.models.sam2.video.model.Sam2Video`) on SAM 3's image encoder, with SAM 3's tracker settings.

The memory encoder takes the 1008-pixel masks onto 16 x 72 = 1152 pixels (antialiased bilinear, after the
sigmoid or binarisation and scaling, as Meta's ``SimpleMaskDownSampler``) before its stride-16 convolutions.
"""

from __future__ import annotations

from typing import Any

from sam_core.models.sam2.video.model import Sam2Video
from sam_core.models.sam3.config import Sam3Config, get_sam3_config
from sam_core.models.sam3.model import SAM3_INPUT_STATISTICS, build_sam3_model

# Meta's Sam3TrackerPredictor (build_tracker) beside the model's config: no hole filling, and the tracked frames
# around a newly prompted frame forgotten (single-object tracking). Arguments of sam_core's VideoPredictor.
SAM3_TRACKER_SETTINGS: dict[str, Any] = {"fill_hole_area": 0, "clear_non_cond_mem_around_input": True}


class Sam3Video(Sam2Video):
    """SAM 3's tracker: :class:`Sam2Video` with SAM 3's image encoder and input normalisation. Build it with
    :func:`build_sam3_video` or from a loaded :class:`~sam_core.models.sam3.model.Sam3` and the checkpoint's
    video tensors with :meth:`from_image_model`."""

    family = "sam3"
    input_statistics = SAM3_INPUT_STATISTICS


def build_sam3_video(name_or_config: str | Sam3Config = "sam3") -> Sam3Video:
    """A randomly initialised Sam3Video of the given registry name or config (eval mode)."""
    return Sam3Video.around(build_sam3_model(get_sam3_config(name_or_config))).eval()

"""The files that ``sam-amg`` writes, as their writer (``sam_core.jobs.amg``) and readers (fine-tuning on them)
both need them: output names and the columns of ``metadata.csv``."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path, PurePosixPath

CSV_HEADER = ["id", "area", "bbox_x0", "bbox_y0", "bbox_w", "bbox_h", "point_input_x", "point_input_y",
              "predicted_iou", "stability_score", "crop_box_x0", "crop_box_y0", "crop_box_w", "crop_box_h"]


def output_names(sources: list[str] | list[Path]) -> list[str]:
    """Outputs are named after the image without its suffix, unless two images share that stem."""
    images = [PurePosixPath(str(source).replace(os.sep, "/")) for source in sources]
    stems = Counter(image.stem for image in images)
    return [image.stem if stems[image.stem] == 1 else image.name.replace(".", "_") for image in images]

"""Old path, kept as a re-export: now ``sam_core.jobs.samples``, and the console script ``sam_core.cli.samples``."""

from sam_core.cli.samples import main  # noqa: F401
from sam_core.jobs.samples import (  # noqa: F401
    SHAPES_MODEL_AMG_OPTIONS,
    MissingPhotosDependency,
    Scene,
    draw_shapes_image,
    shapes_scenes,
    shapes_training_images,
    write_samples,
)

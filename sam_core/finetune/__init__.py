"""Fine-tuning and evaluation: training-data readers (``data``), evaluation (``evaluate``), and the trainer.

``sam_core.evaluate`` is the evaluation function; this package's ``evaluate`` is its module.
"""

from sam_core.finetune.data import (
    AnnotatedImage,
    AnnotatedObject,
    MaskRules,
    Skipped,
    TrainingData,
    read_training_data,
    split_by_image,
)

__all__ = ["AnnotatedImage", "AnnotatedObject", "MaskRules", "Skipped", "TrainingData", "read_training_data",
           "split_by_image"]

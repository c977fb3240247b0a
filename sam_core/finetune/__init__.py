"""Fine-tuning and evaluation: training-data readers (``data``), evaluation (``evaluate``), and the trainer.

``sam_core.evaluate`` is the evaluation function; this package's ``evaluate`` is its module.

The package itself is callable: ``sam_core.finetune(model, train_images, val_images, output_dir, config)`` is
``sam_core.finetune.trainer.finetune``, while ``sam_core.finetune.read_training_data`` and the submodules
stay reachable under the same name.
"""

import sys
import types

from sam_core.finetune.cache import EmbeddingCache
from sam_core.finetune.config import PRESETS, FinetuneConfig
from sam_core.finetune.data import (
    AnnotatedImage,
    AnnotatedObject,
    MaskRules,
    Skipped,
    TrainingData,
    read_training_data,
    split_by_image,
)
from sam_core.finetune.trainer import FinetuneResult, finetune

__all__ = ["PRESETS", "AnnotatedImage", "AnnotatedObject", "EmbeddingCache", "FinetuneConfig", "FinetuneResult",
           "MaskRules", "Skipped", "TrainingData", "finetune", "read_training_data", "split_by_image"]


class _CallablePackage(types.ModuleType):
    """This package, callable as ``finetune``."""

    def __call__(self, *args, **kwargs) -> FinetuneResult:
        return finetune(*args, **kwargs)

    __call__.__doc__ = finetune.__doc__


sys.modules[__name__].__class__ = _CallablePackage

"""sssegmentation 1.7.0's SAM API on sam_core: code written for ``ssseg.modules.models.segmentors.sam`` (and
``samhq``, ``mobilesam``, ``edgesam``, ``samv2``) runs after changing its imports to ``sam_core.compat.ssseg``.

The classes take sssegmentation's constructor keywords (``sam_cfg`` / ``samv2_cfg`` dicts in its format,
``ckptpath`` a file or URL, the ``use_default_*`` flags, ``device``, ``load_ckpt_strict``, every generator
option) and have its methods (``setimage``, ``predict``, ``predicttorch``, ``generate``...), returning what
it returns: the same types, shapes, dtypes and values on the same weights. Underneath are sam_core's
``Predictor``, ``AutomaticMaskGenerator`` and ``VideoPredictor``.

Where sam_core differs on purpose:

- Bad input raises ``ValueError`` (sam_core's ``CheckpointError`` for weights) with the reason, where
  sssegmentation asserts; a ``ckptpath`` that is neither a file nor a URL is an error, not random weights.
- ``device="cuda"`` (the default) falls back to the CPU with a warning where there is no CUDA.
- Downloads are cached in sam_core's cache (see ``sam_core.compat.ssseg.weights``).
- The predictors are plain objects, not ``nn.Module``s; ``predictor.model`` is the model.

Adding a model family (as EdgeSAM was): a predictor subclass of :class:`SamFamilyPredictor` naming its flags
(``FLAGS``, their URLs in ``weights.SSSEG_CHECKPOINT_URLS``) and a generator subclass of
:class:`SamFamilyMaskGenerator`, plus its backbone type in ``sam_core.compat.ssseg.config``.
"""

from sam_core.compat.ssseg.predictors import (
    EdgeSAMAutomaticMaskGenerator,
    EdgeSAMPredictor,
    MobileSAMAutomaticMaskGenerator,
    MobileSAMPredictor,
    SAMAutomaticMaskGenerator,
    SamFamilyMaskGenerator,
    SamFamilyPredictor,
    SAMHQAutomaticMaskGenerator,
    SAMHQPredictor,
    SAMPredictor,
)
from sam_core.compat.ssseg.sam2 import SAMV2AutomaticMaskGenerator, SAMV2ImagePredictor, SAMV2VideoPredictor
from sam_core.compat.ssseg.viz import ResizeLongestSide, showanns, showbox, showmask, showpoints

__all__ = [
    "EdgeSAMAutomaticMaskGenerator", "EdgeSAMPredictor", "MobileSAMAutomaticMaskGenerator", "MobileSAMPredictor",
    "ResizeLongestSide", "SAMAutomaticMaskGenerator", "SAMHQAutomaticMaskGenerator", "SAMHQPredictor", "SAMPredictor",
    "SAMV2AutomaticMaskGenerator", "SAMV2ImagePredictor", "SAMV2VideoPredictor", "SamFamilyMaskGenerator",
    "SamFamilyPredictor", "showanns", "showbox", "showmask", "showpoints",
]

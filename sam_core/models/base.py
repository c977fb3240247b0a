"""What every model class shares beyond the interface: the per-channel normalisation statistics of its input,
which also tell the model's device and dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sam_core.interface import PromptableSegmenter


class NormalizingSegmenter(PromptableSegmenter):
    """A :class:`~sam_core.interface.PromptableSegmenter` whose ``preprocess`` normalises images with
    per-channel statistics, held as the buffers ``pixel_mean`` and ``pixel_std`` (3, 1, 1).

    The buffers are not persistent (the official checkpoints do not store them), and they move and cast with
    the model, so they give its ``device`` and ``dtype`` without a look at its parameters.

    Args:
        pixel_mean: per-channel mean of the images ``preprocess`` receives, in their scale.
        pixel_std: per-channel standard deviation.
    """

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pixel_mean.dtype

"""The frames of EfficientViT-SAM: the image resized for the encoder (long side 512 for the L models) while
prompts and masks stay in SAM's 1024 frame."""

from __future__ import annotations

import numpy as np
import torch

from sam_core.transforms import ResizeLongestSide, UpscaleBackend


class EncoderResizeLongestSide(ResizeLongestSide):
    """SAM's long-side resize with two lengths: ``encoder_length`` for the pixels fed to the encoder,
    ``target_length`` (the prompt frame) for points, boxes and the way back from the low-res logits.

    The reference resizes the original image straight to the encoder size (Pillow bilinear, as SAM), and
    computes the prompt-frame size of the image from the original size alone; so do ``apply_image`` and
    ``upscale_logits`` here. ``input_size`` (what the predictor and the generator record for an image) is the
    encoder-frame size, the shape ``apply_image`` returns; the prompt-frame size is recomputed from the
    original size wherever the logits go back. With both lengths equal this is ``ResizeLongestSide``.
    """

    def __init__(self, encoder_length: int, target_length: int) -> None:
        super().__init__(target_length)
        self.encoder_frame = ResizeLongestSide(encoder_length)

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        return self.encoder_frame.input_size(original_size)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return self.encoder_frame.apply_image(image)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder_frame.apply_image_torch(image)

    def masks_to_low_res(self, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return ResizeLongestSide(self.target_length).masks_to_low_res(masks, size)

    def prompt_frame_size(self, original_size: tuple[int, ...]) -> tuple[int, int]:
        """(H, W) of an image of ``original_size`` in the prompt frame."""
        return self.get_preprocess_shape(int(original_size[0]), int(original_size[1]), self.target_length)

    def upscale_logits(self, low_res: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...],
                       backend: UpscaleBackend = "torch") -> torch.Tensor | np.ndarray:
        return super().upscale_logits(low_res, self.prompt_frame_size(original_size), original_size, backend)

    def upscale_matrices(self, side: int, input_size: tuple[int, ...],
                         original_size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        return super().upscale_matrices(side, self.prompt_frame_size(original_size), original_size)

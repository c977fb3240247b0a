"""Video frames read on demand: a folder of JPEG frames or a video file, each frame decoded, resized to the
model's square input and normalised only when asked for, with a few recent frames kept.

Frames are resized as Meta's video predictor does it: PIL bicubic on the uint8 RGB frame, then / 255 and the
ImageNet normalisation. Folders are decoded with PIL (as Meta's), video files with OpenCV.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG")


class VideoFrames:
    """``len(frames)`` and ``frames[i]``: the normalised (3, S, S) float32 frame i.

    Args:
        video_path: A folder of JPEG frames named by their index (``00000.jpg``...) or a video file.
        image_size: Side of the model input.
        pixel_mean: Per-channel mean of the [0, 1] RGB frame.
        pixel_std: Per-channel standard deviation.
        cache_size: Decoded frames kept (most recently used).
    """

    def __init__(self, video_path: str | os.PathLike, image_size: int, pixel_mean: tuple[float, ...],
                 pixel_std: tuple[float, ...], cache_size: int = 4) -> None:
        path = Path(os.fspath(video_path))
        self.image_size = image_size
        self.mean = torch.tensor(pixel_mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(pixel_std, dtype=torch.float32)[:, None, None]
        self.cache_size = cache_size
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._capture: cv2.VideoCapture | None = None
        self._next_index = 0  # of the open capture
        if path.is_dir():
            names = [p.name for p in path.iterdir() if p.suffix in JPEG_SUFFIXES]
            try:
                names.sort(key=lambda name: int(os.path.splitext(name)[0]))
            except ValueError:
                raise ValueError(f"{path}: JPEG frames must be named by their index (00000.jpg, ...)") from None
            self.paths: list[Path] | None = [path / name for name in names]
            self.video_path = path
            if not names:
                raise ValueError(f"{path}: no JPEG frames (.jpg, .jpeg) in this folder")
            self.num_frames = len(names)
            with Image.open(self.paths[0]) as first:
                self.video_width, self.video_height = first.size
        elif path.is_file():
            self.paths = None
            self.video_path = path
            self.num_frames, self.video_height, self.video_width = _probe_video(path)
        else:
            raise ValueError(f"video_path {os.fspath(video_path)!r}: not a folder of JPEG frames or a video file")

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} outside 0..{self.num_frames - 1}")
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        frame = self._normalise(self._read_rgb(index))
        self._cache[index] = frame
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return frame

    def _read_rgb(self, index: int) -> Image.Image:
        if self.paths is not None:
            with Image.open(self.paths[index]) as image:
                return image.convert("RGB")
        if self._capture is None or index != self._next_index:
            if self._capture is not None:
                self._capture.release()
            self._capture = cv2.VideoCapture(str(self.video_path))
            # Decoding from the start is exact where seeking in a compressed stream may not be.
            for _ in range(index):
                self._capture.grab()
        ok, bgr = self._capture.read()
        if not ok:
            raise RuntimeError(f"{self.video_path}: could not decode frame {index}")
        self._next_index = index + 1
        return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def _normalise(self, image: Image.Image) -> torch.Tensor:
        resized = np.asarray(image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC))
        # / 255 in float64 then float32, as Meta's loader.
        pixels = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
        return (pixels - self.mean) / self.std

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _probe_video(path: Path) -> tuple[int, int, int]:
    """(frames, height, width) of a video file, counting the frames (container counts can be wrong)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"video_path {str(path)!r}: OpenCV cannot open this video file")
        ok, first = capture.read()
        if not ok:
            raise ValueError(f"video_path {str(path)!r}: no frame could be decoded")
        count = 1
        while capture.grab():
            count += 1
        return count, first.shape[0], first.shape[1]
    finally:
        capture.release()

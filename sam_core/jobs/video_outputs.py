"""What ``sam-video`` writes, each file atomically, read back for resuming and for the overlay video: ``run.json``;
per frame ``00000/<object id>.png`` (0/255, ``--output-format png``) or ``00000.json`` (COCO RLE records,
``--output-format coco``); ``overlay.mp4`` (``--overlay``).

The folder layout: docs/video.md."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from sam_core.io.files import png_bytes, temporary_file_beside, write_atomically

RUN_FILE = "run.json"
OVERLAY_FILE = "overlay.mp4"
TEMPORARY_SUFFIX = ".part"
_TEMPORARY_PATTERNS = (f".*{TEMPORARY_SUFFIX}", f".*{TEMPORARY_SUFFIX}.mp4")
_OVERLAY_CODEC = "mp4v"  # in OpenCV's FFmpeg build everywhere, no licensing strings attached


class MaskFolder:
    """The masks of one video in one output folder and format.

    Args:
        folder: The output folder.
        output_format: ``"png"`` or ``"coco"``.
        num_frames: Frames in the video (sets the width of the frame names).
        object_ids: The tracked objects, in the order the masks come in.
    """

    def __init__(self, folder: Path, output_format: str, num_frames: int, object_ids: Sequence[int]) -> None:
        if output_format not in ("png", "coco"):
            raise ValueError(f"output_format must be 'png' or 'coco', got {output_format!r}")
        self.folder = folder
        self.output_format = output_format
        self.object_ids = list(object_ids)
        self._digits = max(5, len(str(num_frames - 1)))

    def frame_name(self, frame: int) -> str:
        return f"{frame:0{self._digits}d}"

    def files(self, frame: int) -> list[Path]:
        """The files holding frame ``frame``'s masks."""
        name = self.frame_name(frame)
        if self.output_format == "coco":
            return [self.folder / f"{name}.json"]
        return [self.folder / name / f"{object_id}.png" for object_id in self.object_ids]

    def is_done(self, frame: int) -> bool:
        return all(path.is_file() for path in self.files(frame))

    def write(self, frame: int, masks: np.ndarray, overwrite: bool) -> int:
        """Write frame ``frame``'s masks ((objects, H, W) bool, in ``object_ids`` order) into the files that do not
        exist yet (all with ``overwrite``); returns how many files were written."""
        if self.output_format == "coco":
            path = self.files(frame)[0]
            if path.is_file() and not overwrite:
                return 0
            records = [_coco_record(object_id, frame, mask) for object_id, mask in zip(self.object_ids, masks)]
            write_atomically(path, lambda temporary: temporary.write_text(json.dumps(records)), TEMPORARY_SUFFIX)
            return 1
        written = 0
        for path, mask in zip(self.files(frame), masks):
            if path.is_file() and not overwrite:
                continue
            write_atomically(path, lambda temporary, mask=mask: temporary.write_bytes(png_bytes(mask)),
                             TEMPORARY_SUFFIX)
            written += 1
        return written

    def read(self, frame: int, size: tuple[int, int]) -> np.ndarray | None:
        """Frame ``frame``'s masks as written ((objects, H, W) bool), or None if they are not all there."""
        if not self.is_done(frame):
            return None
        if self.output_format == "coco":
            records = {record["object_id"]: record for record in json.loads(self.files(frame)[0].read_text())}
            return np.stack([mask_utils.decode(records[object_id]["segmentation"]).astype(bool)
                             for object_id in self.object_ids]) if self.object_ids else np.zeros((0, *size), bool)
        masks = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0 for path in self.files(frame)]
        return np.stack(masks) if masks else np.zeros((0, *size), dtype=bool)


def _coco_record(object_id: int, frame: int, mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    ys, xs = np.nonzero(mask)
    bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)] if len(xs) \
        else [0, 0, 0, 0]
    return {"object_id": object_id, "frame": frame, "area": int(len(xs)), "bbox": bbox, "segmentation": rle}


def remove_temporaries(folder: Path) -> None:
    """Delete the hidden temporary files a killed run left in ``folder`` and its frame folders."""
    for pattern in _TEMPORARY_PATTERNS:
        for leftover in [*folder.glob(pattern), *folder.glob("*/" + pattern)]:
            leftover.unlink(missing_ok=True)


def write_run_record(folder: Path, record: dict) -> None:
    write_atomically(folder / RUN_FILE, lambda temporary: temporary.write_text(json.dumps(record, indent=1)),
                     TEMPORARY_SUFFIX)


def read_run_record(folder: Path) -> dict | None:
    path = folder / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a damaged record says nothing: treated as another run's


class OverlayVideo:
    """An MP4 written under a temporary name and renamed into place by :meth:`close` (context manager).

    Args:
        path: The final file.
        fps: Frames per second.
        size: (width, height) of the frames.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        self._temporary = temporary_file_beside(path, TEMPORARY_SUFFIX + ".mp4")
        self._writer = cv2.VideoWriter(str(self._temporary), cv2.VideoWriter_fourcc(*_OVERLAY_CODEC), fps, size)
        if not self._writer.isOpened():
            self._temporary.unlink(missing_ok=True)
            raise OSError(f"OpenCV cannot write an {_OVERLAY_CODEC} video to {path}")

    def add(self, rgb: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def __enter__(self) -> OverlayVideo:
        return self

    def __exit__(self, error_type: type | None, *_: object) -> None:
        self._writer.release()
        if error_type is None:
            os.replace(self._temporary, self.path)
        else:
            self._temporary.unlink(missing_ok=True)


def video_rgb_frames(frame_paths: Sequence[Path] | None, video_path: Path) -> Iterator[np.ndarray]:
    """The frames of a folder (``frame_paths``, in order) or of a video file, as RGB uint8, one at a time."""
    if frame_paths is not None:
        for path in frame_paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise OSError(f"cannot read the frame {path}")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    capture = cv2.VideoCapture(str(video_path))
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def video_fps(video_path: Path, default: float) -> float:
    """The frame rate a video file declares, else ``default`` (folders of frames declare none)."""
    if video_path.is_dir():
        return default
    capture = cv2.VideoCapture(str(video_path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return fps if fps and np.isfinite(fps) and fps > 0 else default

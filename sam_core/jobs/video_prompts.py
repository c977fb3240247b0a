"""Prompts of a video, read from JSON and checked against the video before any tracking starts: a list of
``{"frame", "object", "points" + "labels" | "box" | "mask"}`` (or ``{"objects": [ids], "prompts": [...]}``), in
pixels of the video frame; every problem of the file is reported in one ``ValueError``.

The file format, with an example: docs/video.md."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

_PROMPT_KEYS = frozenset({"frame", "object", "points", "labels", "box", "mask"})
_FILE_KEYS = frozenset({"objects", "prompts"})


@dataclass(frozen=True)
class VideoPrompt:
    """One prompt: clicks and/or a box, or a mask, for one object on one frame (video pixel coordinates)."""

    frame: int
    object_id: int
    points: np.ndarray | None = None  # (N, 2) float32 x, y
    labels: np.ndarray | None = None  # (N,) int32, 0 or 1
    box: np.ndarray | None = None  # (4,) float32 x0, y0, x1, y1
    mask: np.ndarray | None = None  # (H, W) bool
    mask_path: Path | None = None

    def describe(self) -> dict[str, Any]:
        """The prompt as JSON-ready data (the mask by its file), e.g. to record what a run was given."""
        described: dict[str, Any] = {"frame": self.frame, "object": self.object_id}
        if self.points is not None:
            described["points"] = self.points.tolist()
            described["labels"] = self.labels.tolist()
        if self.box is not None:
            described["box"] = self.box.tolist()
        if self.mask_path is not None:
            described["mask"] = str(self.mask_path)
        return described


def read_video_prompts(path: str | os.PathLike, num_frames: int, height: int, width: int) -> list[VideoPrompt]:
    """The prompts of a JSON file (format: docs/video.md), checked against a video of ``num_frames`` frames of
    ``height`` x ``width`` pixels, sorted by frame and object. Raises one ``ValueError`` listing every problem."""
    source = Path(path)
    try:
        data = json.loads(source.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"prompts file {source}: cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"prompts file {source}: not valid JSON ({error})") from None
    problems: list[str] = []
    declared, entries = _split_file(data, problems)
    prompts: list[VideoPrompt] = []
    seen: dict[tuple[int, int], int] = {}
    for index, entry in enumerate(entries):
        where = f"prompt {index}"
        entry_problems: list[str] = []
        prompt = _parse_prompt(entry, source.parent, num_frames, height, width, entry_problems)
        if prompt is not None:
            where += f" (frame {prompt.frame}, object {prompt.object_id})"
            key = (prompt.frame, prompt.object_id)
            if key in seen:
                entry_problems.append(f"repeats the frame and object of prompt {seen[key]}; give each object's "
                                      "points, box or mask on a frame in one prompt")
            seen.setdefault(key, index)
            if declared is not None and prompt.object_id not in declared:
                entry_problems.append(f"object {prompt.object_id} is not among the declared objects "
                                      f"{sorted(declared)}")
            if not entry_problems:
                prompts.append(prompt)
        problems += [f"{where}: {problem}" for problem in entry_problems]
    if declared is not None:
        prompted = {object_id for _, object_id in seen}
        problems += [f"object {object_id} is declared but no prompt gives it"
                     for object_id in sorted(declared - prompted)]
    if not entries and not problems:
        problems.append("no prompts: give at least one frame, object and points, box or mask")
    if problems:
        listed = "\n  ".join(problems)
        raise ValueError(f"prompts file {source}: {len(problems)} problem{'s' if len(problems) > 1 else ''} "
                         f"(video: {num_frames} frames of {width}x{height} pixels):\n  {listed}")
    return sorted(prompts, key=lambda prompt: (prompt.frame, prompt.object_id))


def _split_file(data: Any, problems: list[str]) -> tuple[set[int] | None, list[Any]]:
    """(declared object ids or None, prompt entries) of the file's top level."""
    if isinstance(data, list):
        return None, data
    if not isinstance(data, Mapping):
        problems.append(f"the top level must be a list of prompts or an object with \"prompts\", got "
                        f"{type(data).__name__}")
        return None, []
    if unknown := sorted(set(data) - _FILE_KEYS):
        problems.append(f"unknown top-level keys {unknown} (expected {sorted(_FILE_KEYS)})")
    entries = data.get("prompts")
    if not isinstance(entries, list):
        problems.append("\"prompts\" must be a list of prompts")
        entries = []
    if "objects" not in data:
        return None, entries
    objects = data["objects"]
    if not isinstance(objects, list) or not all(_is_object_id(value) for value in objects):
        problems.append(f"\"objects\" must be a list of object ids (integers >= 0), got {objects!r}")
        return None, entries
    if len(set(objects)) != len(objects):
        problems.append(f"\"objects\" lists an id twice: {objects}")
    return set(objects), entries


def _parse_prompt(entry: Any, folder: Path, num_frames: int, height: int, width: int,
                  problems: list[str]) -> VideoPrompt | None:
    if not isinstance(entry, Mapping):
        problems.append(f"must be an object with \"frame\", \"object\" and points, box or mask, got {entry!r}")
        return None
    if unknown := sorted(set(entry) - _PROMPT_KEYS):
        problems.append(f"unknown keys {unknown} (expected {sorted(_PROMPT_KEYS)})")
    frame, object_id = entry.get("frame"), entry.get("object")
    if not (isinstance(frame, int) and not isinstance(frame, bool)) or not 0 <= frame < num_frames:
        problems.append(f"\"frame\" must be a frame index in 0..{num_frames - 1}, got {frame!r}")
    if not _is_object_id(object_id):
        problems.append(f"\"object\" must be an object id (an integer >= 0), got {object_id!r}")
    has_points, has_box, has_mask = ("points" in entry or "labels" in entry), "box" in entry, "mask" in entry
    if not (has_points or has_box or has_mask):
        problems.append("gives no \"points\" (with \"labels\"), \"box\" or \"mask\"")
    if has_mask and (has_points or has_box):
        problems.append("a \"mask\" prompt cannot also have points or a box (SAM 2 takes a mask alone)")
    points = labels = box = mask = mask_path = None
    if has_points:
        points, labels = _parse_points(entry.get("points"), entry.get("labels"), height, width, problems)
    if has_box:
        box = _parse_box(entry["box"], height, width, problems)
    if has_mask:
        mask_path, mask = _read_mask(entry["mask"], folder, height, width, problems)
    if problems:
        return None
    return VideoPrompt(frame, object_id, points, labels, box, mask, mask_path)


def _is_object_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite_numbers(value: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)


def _parse_points(points: Any, labels: Any, height: int, width: int,
                  problems: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    count = len(problems)
    if points is None or labels is None:
        problems.append("\"points\" and \"labels\" go together: one label (1 object, 0 background) per point")
        return None, None
    if (not isinstance(points, list) or not points
            or not all(isinstance(p, list) and len(p) == 2 and _finite_numbers(p) for p in points)):
        problems.append(f"\"points\" must be a non-empty list of [x, y] pairs of finite numbers, got {points!r}")
    elif not all(0 <= x <= width and 0 <= y <= height for x, y in points):
        problems.append(f"\"points\" {points} fall outside the {width}x{height} frame")
    if not isinstance(labels, list) or not all(label in (0, 1) and not isinstance(label, (bool, float))
                                               for label in labels):
        problems.append(f"\"labels\" must be a list of 0 (background) and 1 (object), got {labels!r}")
    elif isinstance(points, list) and len(labels) != len(points):
        problems.append(f"{len(points)} points but {len(labels)} labels")
    if len(problems) > count:
        return None, None
    return np.asarray(points, dtype=np.float32), np.asarray(labels, dtype=np.int32)


def _parse_box(box: Any, height: int, width: int, problems: list[str]) -> np.ndarray | None:
    if not isinstance(box, list) or len(box) != 4 or not _finite_numbers(box):
        problems.append(f"\"box\" must be [x0, y0, x1, y1], four finite numbers, got {box!r}")
        return None
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        problems.append(f"\"box\" {box} has x1 < x0 or y1 < y0 (expected [x0, y0, x1, y1])")
        return None
    if min(x0, y0) < 0 or x1 > width or y1 > height:
        problems.append(f"\"box\" {box} reaches outside the {width}x{height} frame")
        return None
    return np.asarray(box, dtype=np.float32)


def _read_mask(name: Any, folder: Path, height: int, width: int,
               problems: list[str]) -> tuple[Path | None, np.ndarray | None]:
    if not isinstance(name, str) or not name:
        problems.append(f"\"mask\" must be the path of an image file, got {name!r}")
        return None, None
    path = folder / name
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if image is None:
        problems.append(f"\"mask\" {path}: {'not an image file' if path.is_file() else 'no such file'}")
        return None, None
    mask = image.any(axis=2) if image.ndim == 3 else image > 0
    if mask.shape != (height, width):
        problems.append(f"\"mask\" {path} is {mask.shape[1]}x{mask.shape[0]}; the frames are {width}x{height}")
        return None, None
    if not mask.any():
        problems.append(f"\"mask\" {path} is empty (no nonzero pixel)")
        return None, None
    return path, mask


def prompt_frames(prompts: Sequence[VideoPrompt]) -> list[int]:
    """The prompted frames, in order."""
    return sorted({prompt.frame for prompt in prompts})

"""What the SAM 2 video benchmarks share: a synthetic clip, random-weight checkpoints, the predictors, and
measurements of a tracking run (time, peak RSS, tensors held by the inference state)."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sam_core import SAM2_CONFIGS, build_sam2_video_predictor
from sam_core.models.sam2.parity import make_reference_video_predictor, reference_video_on_cpu, save_reference_pt

IMPLEMENTATIONS = ("reference", "sam_core")


def draw_clip(folder: Path, frames: int, height: int, width: int) -> Path:
    """``frames`` JPEG frames (00000.jpg...): a rectangle and an ellipse moving over smooth noise. Existing frames
    of the same size are kept, so clips of several lengths can share a folder's first frames."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    background = rng.integers(40, 140, size=(height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
    background = np.asarray(Image.fromarray(background).resize((width, height), Image.Resampling.BILINEAR))
    ys, xs = np.mgrid[:height, :width]
    for t in range(frames):
        path = folder / f"{t:05d}.jpg"
        if path.is_file():
            continue
        frame = background.copy()
        phase = 2 * np.pi * t / 60
        cx, cy = width * (0.3 + 0.15 * np.sin(phase)), height * (0.4 + 0.1 * np.cos(phase))
        frame[((xs - cx) / (width / 8)) ** 2 + ((ys - cy) / (height / 6)) ** 2 <= 1] = (220, 50, 50)
        x0 = int(width * (0.55 + 0.1 * np.cos(phase)))
        frame[height // 2:height // 2 + height // 4, x0:x0 + width // 6] = (50, 200, 80)
        Image.fromarray(frame).save(path, quality=90)
    return folder


def click(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A positive click inside the ellipse of frame 0."""
    return np.array([[width * 0.3, height * 0.5]], dtype=np.float32), np.array([1], dtype=np.int32)


def make_checkpoint(config_name: str, path: Path) -> Path:
    """Meta's video model with ``config_name``'s shapes, random weights and the object head forced to say
    "present" (so that every frame is really tracked), as a Meta ``.pt``; written once."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_reference_pt(make_reference_video_predictor(SAM2_CONFIGS[config_name], seed=0), path)
    return path


def load_predictor(implementation: str, config_name: str, checkpoint: Path) -> Any:
    """Meta's SAM2VideoPredictor or sam_core's VideoPredictor with the checkpoint's weights (the post-processing of
    both builders: dynamic multimask, binarised clicked masks, holes of 8 pixels filled)."""
    config = SAM2_CONFIGS[config_name]
    if implementation == "sam_core":
        return build_sam2_video_predictor(config, checkpoint)
    reference = make_reference_video_predictor(config, seed=0)
    reference.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    return reference


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def tensor_bytes(value: Any) -> int:
    """Bytes of the distinct tensor storages reachable from ``value`` (dicts, lists, objects' attributes)."""
    seen: set[int] = set()
    total = 0
    for tensor in _tensors(value, set()):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def _tensors(value: Any, visited: set[int]) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
        return
    if id(value) in visited or isinstance(value, (str, bytes, int, float, bool, type(None), torch.nn.Module)):
        return
    visited.add(id(value))
    children = (value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple, set))
                else vars(value).values() if hasattr(value, "__dict__") else ())
    for child in children:
        yield from _tensors(child, visited)


def track(implementation: str, predictor: Any, folder: Path, height: int, width: int,
          measure_state: bool = False, logits: list | None = None) -> dict[str, Any]:
    """One object clicked on frame 0, tracked forward to the end: seconds (init_state and prompt; propagation per
    frame), peak RSS and, with ``measure_state``, the largest tensor footprint of the inference state seen while
    tracking (walked after every frame, which the timings then include). Each frame's logits are appended to
    ``logits`` if given."""
    points, labels = click(height, width)
    context = reference_video_on_cpu(predictor) if implementation == "reference" else nullcontext()
    with torch.inference_mode(), context:
        start = time.perf_counter()
        state = predictor.init_state(str(folder))
        predictor.add_new_points_or_box(state, 0, 1, points=points, labels=labels)
        prompted = time.perf_counter()
        largest_state, frames, present = 0, 0, 0
        for _, _, masks in predictor.propagate_in_video(state):
            if logits is not None:
                logits.append(masks[:, 0].float().numpy())
            frames += 1
            present += int((masks > 0).any())
            if measure_state:
                largest_state = max(largest_state, tensor_bytes(state))
        done = time.perf_counter()
    return {"frames": frames, "frames_with_mask": present, "setup_s": prompted - start,
            "per_frame_s": (done - prompted) / frames, "state_mb": largest_state / 2**20, "peak_rss_mb": peak_rss_mb()}

"""``sam-video``: track objects through a video from clicks, boxes or masks given in a JSON file, and write
per-frame masks and an overlay video. A rerun resumes the run its ``run.json`` records; ``--overwrite`` rewrites.

Design notes (tracking directions, resuming): docs/video.md."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sam_core.errors import CheckpointError
from sam_core.io.checkpoints import load_checkpoint
from sam_core.io.video_frames import VideoFrames
from sam_core.jobs.video_outputs import (
    OVERLAY_FILE,
    MaskFolder,
    OverlayVideo,
    read_run_record,
    remove_temporaries,
    video_fps,
    video_rgb_frames,
    write_run_record,
)
from sam_core.jobs.video_prompts import VideoPrompt, read_video_prompts
from sam_core.models.edgetam.config import EDGETAM_CONFIGS
from sam_core.models.edgetam.model import EdgeTam
from sam_core.models.edgetam.video import EdgeTamVideo
from sam_core.models.sam2.config import SAM2_CONFIGS
from sam_core.models.sam2.model import Sam2
from sam_core.models.sam2.video.model import Sam2Video
from sam_core.models.sam3.config import SAM3_CONFIGS
from sam_core.models.sam3.model import Sam3
from sam_core.models.sam3.video import SAM3_TRACKER_SETTINGS, Sam3Video
from sam_core.pipelines.video_predictor import VideoPredictor
from sam_core.viz import draw_boxes, draw_masks, draw_points, random_colors

_DEFAULT_FPS = 30.0
_DIRECTIONS = ("both", "forward", "reverse")


class UsageError(ValueError):
    """Arguments, video or prompts that cannot be used: reported before any tracking, exit status 2."""


@dataclass(frozen=True)
class VideoInfo:
    """What the CLI reads of a video before tracking: its frame count and size, and its frame files."""

    path: Path
    num_frames: int
    height: int
    width: int
    frame_paths: list[Path] | None  # a folder's frames in order; None for a video file


@dataclass(frozen=True)
class TrackingPass:
    """One ``propagate_in_video`` call and the frames it yields."""

    start_frame: int
    reverse: bool
    frames: range


def main(argv: list[str] | None = None) -> int:
    """Console entry point; the exit status is 0 on success, 1 if tracking failed midway, 2 for unusable
    arguments, video, prompts or model."""
    parser = _parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        video = probe_video(args.video)
        prompts = read_video_prompts(args.prompts, video.num_frames, video.height, video.width)
        if args.fps is not None and not args.fps > 0:
            raise UsageError(f"--fps must be a positive number, got {args.fps}")
        passes = tracking_passes(prompts, video.num_frames, args.direction, args.start_frame, args.max_frames)
        record = run_record(args, video, prompts, passes)
        _check_output_folder(args.output, args.video, record, args.overwrite)
    except (UsageError, ValueError, OSError) as error:
        print(f"sam-video: error: {error}", file=sys.stderr)
        return 2
    object_ids = sorted({prompt.object_id for prompt in prompts})
    masks = MaskFolder(args.output, args.output_format, video.num_frames, object_ids)
    frames = sorted({frame for tracking in passes for frame in tracking.frames})
    pending = args.overwrite or not all(masks.is_done(frame) for frame in frames)
    written = 0
    if pending:
        try:
            predictor = load_video_predictor(args.model, args.config, args.device)
        except (CheckpointError, OSError, ValueError) as error:
            print(f"sam-video: error: {error}", file=sys.stderr)
            return 2
        args.output.mkdir(parents=True, exist_ok=True)
        remove_temporaries(args.output)
        write_run_record(args.output, record)
        try:
            written = track(predictor, video, prompts, passes, masks, args.overwrite)
        except (RuntimeError, OSError, ValueError) as error:
            print(f"sam-video: error: tracking failed: {error}", file=sys.stderr)
            return 1
    overlay = args.output / OVERLAY_FILE
    if args.overlay and (args.overwrite or written or not overlay.is_file()):
        write_overlay(overlay, video, prompts, masks, args.fps or video_fps(args.video, _DEFAULT_FPS))
    kept = "" if pending else ", all there already"
    print(f"sam-video: {len(frames)} frames x {len(object_ids)} objects: {written} mask files written{kept}"
          f"{'; overlay ' + str(overlay) if args.overlay else ''}; {time.perf_counter() - started:.1f} s; "
          f"outputs in {args.output}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam-video", description="Track objects through a video with SAM 2, SAM 3 or EdgeTAM: prompts (clicks, "
                                      "boxes or masks on any frames, in a JSON file) -> masks on every frame and an "
                                      "overlay video.")
    parser.add_argument("--model", required=True, help="SAM 2, SAM 3 or EdgeTAM checkpoint: Meta .pt (sam3.pt, "
                                                       "edgetam.pt...), Hugging Face Sam2VideoModel / "
                                                       "Sam3TrackerVideoModel / EdgeTamVideoModel folder or hub id, "
                                                       "or registry name (sam2.1_hiera_tiny, sam3, edgetam, ...)")
    parser.add_argument("--config", choices=sorted({**SAM2_CONFIGS, **SAM3_CONFIGS, **EDGETAM_CONFIGS}),
                        help="model type of --model (default: read from the checkpoint)")
    parser.add_argument("--video", type=Path, required=True,
                        help="a video file (read with OpenCV) or a folder of JPEG frames named by index (00000.jpg...)")
    parser.add_argument("--prompts", type=Path, required=True,
                        help="JSON list of {\"frame\", \"object\", \"points\" + \"labels\" | \"box\" | \"mask\"} "
                             "(see sam_core/jobs/video_prompts.py)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the masks (created if needed)")
    parser.add_argument("--output-format", choices=("png", "coco"), default="png",
                        help="png: <frame>/<object>.png; coco: <frame>.json with COCO RLE masks (default: png)")
    parser.add_argument("--overlay", action="store_true",
                        help=f"also write {OVERLAY_FILE}: the masks drawn on the video")
    parser.add_argument("--fps", type=float, help="frame rate of the overlay (default: the video's, 30 for frames)")
    parser.add_argument("--direction", choices=_DIRECTIONS, default="both",
                        help="forward from the start frame, reverse (backward) from it, or both (default)")
    parser.add_argument("--start-frame", type=int,
                        help="frame tracking starts from (default: the first prompted frame; reverse: the last)")
    parser.add_argument("--max-frames", type=int,
                        help="track at most this many frames past the start frame in each direction (default: all)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite every output, even those already there")
    return parser


def probe_video(path: Path) -> VideoInfo:
    """Frame count and size of a video file or folder of frames, without decoding the frames."""
    if not path.exists():
        raise UsageError(f"--video {path} does not exist")
    try:
        # The predictor's own reader, so that the frames counted here are the frames it tracks.
        frames = VideoFrames(path, image_size=1, pixel_mean=(0.0,) * 3, pixel_std=(1.0,) * 3)
    except ValueError as error:
        raise UsageError(f"--video: {error}") from None
    try:
        return VideoInfo(path, frames.num_frames, frames.video_height, frames.video_width, frames.paths)
    finally:
        frames.close()


def tracking_passes(prompts: Sequence[VideoPrompt], num_frames: int, direction: str, start_frame: int | None,
                    max_frames: int | None) -> list[TrackingPass]:
    """The ``propagate_in_video`` calls of a run and the frames each yields (Meta's ranges)."""
    if direction not in _DIRECTIONS:
        raise UsageError(f"--direction must be one of {_DIRECTIONS}, got {direction!r}")
    if start_frame is not None and not 0 <= start_frame < num_frames:
        raise UsageError(f"--start-frame {start_frame} is outside the video's frames 0..{num_frames - 1}")
    if max_frames is not None and max_frames < 0:
        raise UsageError(f"--max-frames must be >= 0, got {max_frames}")
    prompted = [prompt.frame for prompt in prompts]
    reach = num_frames if max_frames is None else max_frames
    if direction == "reverse":
        start = max(prompted) if start_frame is None else start_frame
        if start == 0:
            raise UsageError("--direction reverse from frame 0 tracks nothing; give a later --start-frame")
        return [TrackingPass(start, True, range(start, max(start - reach, 0) - 1, -1))]
    start = min(prompted) if start_frame is None else start_frame
    passes = [TrackingPass(start, False, range(start, min(start + reach, num_frames - 1) + 1))]
    if direction == "both" and start > 0:
        passes.append(TrackingPass(start, True, range(start, max(start - reach, 0) - 1, -1)))
    return passes


def run_record(args: argparse.Namespace, video: VideoInfo, prompts: Sequence[VideoPrompt],
               passes: Sequence[TrackingPass]) -> dict[str, Any]:
    """What the masks of an output folder depend on (compared when a run resumes)."""
    return {
        "video": str(video.path.resolve()), "frames": video.num_frames, "size": [video.width, video.height],
        "model": str(args.model), "passes": [[p.start_frame, "reverse" if p.reverse else "forward", len(p.frames)]
                                             for p in passes],
        "prompts": [prompt.describe() for prompt in prompts],
    }


def _check_output_folder(output: Path, video: Path, record: dict[str, Any], overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file, not a folder")
    if video.is_dir() and output.resolve() == video.resolve():
        raise UsageError("--output must differ from the --video folder")
    previous = read_run_record(output)
    if previous is not None and previous != record and not overwrite:
        changed = sorted(key for key in record.keys() | previous.keys() if record.get(key) != previous.get(key))
        raise UsageError(f"--output {output} holds the masks of another run ({', '.join(changed)} differ: see its "
                         "run.json); use another folder, or --overwrite to replace them")


def load_video_predictor(source: str, config: str | None = None, device: str | None = None) -> VideoPredictor:
    """sam_core's VideoPredictor for a SAM 2 or EdgeTAM checkpoint (Meta's build_sam2_video_predictor defaults) or a
    SAM 3 one (Meta's Sam3TrackerPredictor settings): its image weights and its video modules
    (``LoadedCheckpoint.extras``)."""
    loaded = load_checkpoint(source, config=config, device=device)
    if isinstance(loaded.model, Sam3):
        # SAM 3's tracker: its own predictor settings (Meta's Sam3TrackerPredictor).
        return VideoPredictor(Sam3Video.from_image_model(loaded.model, loaded.extras), **SAM3_TRACKER_SETTINGS)
    if not isinstance(loaded.model, Sam2):
        raise CheckpointError(f"{source} holds a {loaded.model.family} model; video tracking needs SAM 2, SAM 3 "
                              "or EdgeTAM")
    video_type = EdgeTamVideo if isinstance(loaded.model, EdgeTam) else Sam2Video
    return VideoPredictor(video_type.from_image_model(loaded.model, loaded.extras))


@torch.inference_mode()
def track(predictor: Any, video: VideoInfo, prompts: Sequence[VideoPrompt], passes: Sequence[TrackingPass],
          masks: MaskFolder, overwrite: bool) -> int:
    """Prompt ``predictor`` (Meta's SAM2VideoPredictor API), run the passes and write each yielded frame's masks
    as it comes (nothing is kept); returns the number of files written."""
    state = predictor.init_state(str(video.path))
    for prompt in prompts:
        if prompt.mask is not None:
            predictor.add_new_mask(state, prompt.frame, prompt.object_id, prompt.mask)
        else:
            predictor.add_new_points_or_box(state, prompt.frame, prompt.object_id, points=prompt.points,
                                            labels=prompt.labels, box=prompt.box)
    # A frame that two passes yield (the start frame of "both") is tracked again by the later one, which
    # replaces the earlier result in the predictor's state: only the last pass through a frame writes it.
    last_pass = {frame: index for index, tracking in enumerate(passes) for frame in tracking.frames}
    written = 0
    total = sum(len(tracking.frames) for tracking in passes)
    with tqdm(total=total, desc="sam-video", unit="frame", file=sys.stderr, disable=None) as progress:
        for index, tracking in enumerate(passes):
            max_frames = len(tracking.frames) - 1
            for frame, object_ids, logits in predictor.propagate_in_video(
                    state, start_frame_idx=tracking.start_frame, max_frame_num_to_track=max_frames,
                    reverse=tracking.reverse):
                if last_pass[frame] == index:
                    order = [list(object_ids).index(object_id) for object_id in masks.object_ids]
                    binary = (logits[order, 0] > 0.0).cpu().numpy()
                    written += masks.write(frame, binary, overwrite)
                progress.update(1)
    return written


def write_overlay(path: Path, video: VideoInfo, prompts: Sequence[VideoPrompt], masks: MaskFolder,
                  fps: float) -> None:
    """Every frame of the video with its masks (read back from the output files) and its prompts drawn."""
    colors = random_colors(len(masks.object_ids))
    by_frame: dict[int, list[VideoPrompt]] = {}
    for prompt in prompts:
        by_frame.setdefault(prompt.frame, []).append(prompt)
    with OverlayVideo(path, fps, (video.width, video.height)) as overlay:
        for frame, rgb in enumerate(video_rgb_frames(video.frame_paths, video.path)):
            frame_masks = masks.read(frame, (video.height, video.width))
            if frame_masks is not None:
                rgb = draw_masks(rgb, frame_masks, colors=colors)
            for prompt in by_frame.get(frame, []):
                if prompt.box is not None:
                    rgb = draw_boxes(rgb, prompt.box)
                if prompt.points is not None:
                    rgb = draw_points(rgb, prompt.points, prompt.labels)
            overlay.add(rgb)


if __name__ == "__main__":
    sys.exit(main())

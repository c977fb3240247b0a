"""sam-amg's job: segment every image of a folder (or a list) and write each one's masks, resumably.

Both engines (this process, ``sam_core.cli.amg``; Ray actors, ``sam_core.distributed.amg``) plan, segment and
write through these functions, so they name, skip and write outputs alike. Every output is written atomically
(a hidden temporary beside it, then a rename), so a killed run leaves whole files or none.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sam_core.io.amg_outputs import CSV_HEADER, output_names
from sam_core.io.checkpoints import load_sam
from sam_core.io.files import png_bytes, write_bytes_atomically
from sam_core.pipelines.mask_generator import AutomaticMaskGenerator
from sam_core.pipelines.masks import coco_encode_rle, rle_to_mask
from sam_core.viz import draw_masks

# Generator options that sam-amg exposes as flags: (flag, type, help). Defaults are the generator's own.
GENERATOR_OPTIONS: list[tuple[str, type, str]] = [
    ("points_per_side", int, "grid points along each side of the image (default 32)"),
    ("points_per_batch", int, "point prompts decoded together (default 64)"),
    ("pred_iou_thresh", float, "keep masks whose predicted IoU is above this (default: the model family's, "
                               "0.88 for SAM, 0.8 for SAM 2)"),
    ("stability_score_thresh", float, "keep masks whose stability score is at least this (default: the model "
                                      "family's, 0.95)"),
    ("stability_score_offset", float, "logit offset of the stability score (default 1.0)"),
    ("box_nms_thresh", float, "box IoU for duplicate suppression within a crop (default 0.7)"),
    ("crop_n_layers", int, "also run on crops; layer i has (2**i)**2 crops (default 0)"),
    ("crop_nms_thresh", float, "box IoU for duplicate suppression between crops (default 0.7)"),
    ("crop_overlap_ratio", float, "overlap of neighbouring crops, fraction of the short side (default 512/1500)"),
    ("crop_n_points_downscale_factor", int, "points per side shrink by this factor per crop layer (default 1)"),
    ("min_mask_region_area", int, "fill holes and drop islands smaller than this many pixels (SAM 2: in the "
                                  "low-res logits) (default 0: off)"),
    ("mask_threshold", float, "logit above which a pixel is in a mask (default: the model's, 0.0)"),
]



LIST_SUFFIXES = frozenset({".txt", ".csv", ".parquet"})
FAILURES_FILE = "failures.csv"


def plan_outputs(args: argparse.Namespace, sources: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(every (image, output name), those still to do), with the output folder made and what a killed run left
    of the images' outputs deleted. Both engines start here, so they name and skip outputs alike."""
    args.output.mkdir(parents=True, exist_ok=True)
    jobs = list(zip(sources, output_names(sources)))
    pending = [(source, name) for source, name in jobs if args.overwrite or not is_done(args, name)]
    remove_stale_temporaries(args.output, [name for _, name in jobs])
    return jobs, pending


def check_output(args: argparse.Namespace) -> None:
    """``ValueError`` when the output folder is the input folder: the outputs would be read as inputs."""
    if Path(args.input).is_dir() and args.output.resolve() == Path(args.input).resolve():
        raise ValueError("--output must differ from the --input folder (the outputs would be read as inputs)")


class ImageFailed(Exception):
    """An image that could not be read or segmented; the message is the reason written to failures.csv."""


def process_image(generator: AutomaticMaskGenerator, args: argparse.Namespace, source: str,
                      name: str) -> int | ImageFailed:
    """Segment one image and write its outputs; the number of masks written, or why the image failed."""
    image = read_image(source)
    if image is None:
        return ImageFailed("cannot read the file as an image")
    try:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        records = generator.generate(image)
        write_outputs(args, name, image, records)
    except (OSError, ValueError, RuntimeError, cv2.error) as error:
        return ImageFailed(str(error))
    return len(records)


def read_image(source: str) -> np.ndarray | None:
    """A BGR image as ``cv2.imread`` decodes it (EXIF orientation applied), from a local path or, through
    pyarrow's file systems, a URI such as ``s3://bucket/key.jpg``; None when it cannot be read."""
    if "://" not in source:
        return cv2.imread(source, cv2.IMREAD_COLOR)
    from pyarrow import fs  # comes with the ray extra, the only engine that takes lists of URIs

    try:
        filesystem, path = fs.FileSystem.from_uri(source)
        with filesystem.open_input_file(path) as handle:
            data = np.frombuffer(handle.readall(), dtype=np.uint8)
    except (OSError, ValueError):
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


class Progress:
    """The progress bar, warnings, failures.csv and summary line of one sam-amg run, whatever its engine.

    Args:
        args: the run's arguments.
        total: images in the input.
        pending: images to segment (the others have outputs).
    """

    def __init__(self, args: argparse.Namespace, total: int, pending: int) -> None:
        self.output, self.total, self.pending = args.output, total, pending
        self.done = self.masks = 0
        self.failures: list[tuple[str, str]] = []
        self.started = time.perf_counter()
        self.bar = tqdm(total=pending, desc="sam-amg", unit="image", file=sys.stderr, disable=None)

    def record(self, source: str, result: int | ImageFailed) -> None:
        """Count one image's result: its number of masks, or why it failed (warned about and listed in
        failures.csv at once, so a killed run leaves its failures so far)."""
        if isinstance(result, ImageFailed):
            tqdm.write(f"sam-amg: warning: {source}: {result}; skipped", file=sys.stderr)
            self.failures.append((source, str(result)))
            self._write_failures()
        else:
            self.done += 1
            self.masks += result
        self.bar.update()

    def finish(self) -> int:
        """Close the bar, print the summary line, return the exit status (1 when any image failed)."""
        self.bar.close()
        self._write_failures()
        print(f"sam-amg: {self.total} images: {self.done} processed ({self.masks} masks), "
              f"{self.total - self.pending} skipped (outputs exist), {len(self.failures)} failed; "
              f"{time.perf_counter() - self.started:.1f} s; outputs in {self.output}")
        return 1 if self.failures else 0

    def _write_failures(self) -> None:
        """failures.csv lists this run's failed images (every image without outputs is retried, so those are all
        the failures there are); a run with none deletes an older file."""
        path = self.output / FAILURES_FILE
        if not self.failures:
            path.unlink(missing_ok=True)
            return
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["path", "reason"])
        writer.writerows(self.failures)
        write_bytes_atomically(path, text.getvalue().encode("utf-8"))


def build_generator(args: argparse.Namespace) -> AutomaticMaskGenerator:
    options = {option: getattr(args, option) for option, _, _ in GENERATOR_OPTIONS if getattr(args, option) is not None}
    if args.point_grids is not None:
        if args.points_per_side is not None:
            raise ValueError("give --points-per-side or --point-grids, not both")
        loaded = np.load(args.point_grids)
        options["point_grids"] = [loaded] if isinstance(loaded, np.ndarray) else [loaded[k] for k in loaded.files]
        options["points_per_side"] = None
    if args.use_m2m:
        options["use_m2m"] = True
    if args.single_mask:
        options["multimask_output"] = False
    source = args.model if args.model is not None else args.checkpoint
    sam = load_sam(source, config=args.model_type, device=args.device)
    # The CLI converts each mask to what it writes, so keep the compact form until then.
    return AutomaticMaskGenerator(sam, output_mode="uncompressed_rle", **options)


def is_done(args: argparse.Namespace, name: str) -> bool:
    main = args.output / name / "metadata.csv" if args.output_format == "png" else args.output / f"{name}.json"
    return main.exists() and (not args.overlay or (args.output / f"{name}_overlay.png").exists())


def remove_stale_temporaries(output: Path, names: list[str]) -> None:
    """Delete what a killed run left of these images' outputs: hidden temporary files and folders, and a finished
    folder being replaced (never taken for outputs, but litter). A run that another sam-amg process is writing
    into the same folder at the same time would lose its temporaries: give concurrent runs their own folders."""
    for name in names:
        stem = glob.escape(name)
        for pattern in (f".{stem}.*.tmp", f".{stem}.*.old", f".{stem}_overlay.png.*.tmp"):
            for leftover in output.glob(pattern):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)


def write_outputs(args: argparse.Namespace, name: str, image: np.ndarray, records: list[dict]) -> None:
    if args.output_format == "png":
        write_mask_folder(args.output / name, records)
    else:
        coco_records = [{**record, "segmentation": coco_encode_rle(record["segmentation"])} for record in records]
        write_bytes_atomically(args.output / f"{name}.json", json.dumps(coco_records).encode("utf-8"))
    if args.overlay:
        # Largest masks first, so that small ones stay visible on top.
        by_area = sorted(records, key=lambda record: record["area"], reverse=True)
        masks = np.stack([rle_to_mask(record["segmentation"]) for record in by_area]) if by_area else \
            np.zeros((0, *image.shape[:2]), dtype=bool)
        drawn = cv2.cvtColor(draw_masks(image, masks), cv2.COLOR_RGB2BGR)
        write_bytes_atomically(args.output / f"{name}_overlay.png", png_bytes(drawn))


def write_mask_folder(folder: Path, records: list[dict]) -> None:
    """Write ``<i>.png`` (0/255) per mask and metadata.csv into a temporary folder, then move it into place."""
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        rows = []
        for index, record in enumerate(records):
            (temporary / f"{index}.png").write_bytes(png_bytes(rle_to_mask(record["segmentation"])))
            rows.append([index, record["area"], *record["bbox"], *record["point_coords"][0],
                         record["predicted_iou"], record["stability_score"], *record["crop_box"]])
        with open(temporary / "metadata.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_HEADER)
            writer.writerows(rows)
        if folder.exists():  # --overwrite: swap the old folder out, then delete it
            retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
            os.replace(folder, retired / folder.name)
            os.replace(temporary, folder)
            shutil.rmtree(retired)
        else:
            os.replace(temporary, folder)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)

"""Console scripts."""

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
from collections import Counter
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import torch
from tqdm import tqdm

from sam_core.checkpoint import CheckpointError, load_sam, model_type_name, save_meta_checkpoint, save_sam
from sam_core.distributed.arguments import add_engine_arguments
from sam_core.families import model_names
from sam_core.mask_generator import AutomaticMaskGenerator
from sam_core.masks import coco_encode_rle, rle_to_mask
from sam_core.runtime import keep_freed_memory_by_default
from sam_core.viz import draw_masks

_CONVERT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def convert_main(argv: list[str] | None = None) -> int:
    """``sam-convert SRC DST``: rewrite any checkpoint that load_sam reads as sam_core safetensors, or, when
    DST ends in .pth, in Meta's layout (SAM only: the state dict that segment_anything loads)."""
    parser = argparse.ArgumentParser(
        prog="sam-convert", description="Convert a SAM checkpoint to sam_core's safetensors format, or to Meta's "
                                        ".pth layout (SAM 1 models; DST ending in .pth).")
    parser.add_argument("src", help="Meta .pth or SAM 2 .pt, Hugging Face checkpoint folder or hub id, sam_core "
                                    ".safetensors, or an official model name (vit_b, sam2.1_hiera_tiny, ...)")
    parser.add_argument("dst", type=Path, help="output file: .safetensors (sam_core), or .pth (Meta's "
                                                "segment_anything layout, SAM 1 models)")
    parser.add_argument("--config", choices=model_names(),
                        help="model type to load as (default: read from the checkpoint)")
    parser.add_argument("--dtype", choices=list(_CONVERT_DTYPES),
                        help="dtype of the written weights (default: the source's)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    args = parser.parse_args(argv)
    if args.dst.exists() and not args.overwrite:
        print(f"sam-convert: {args.dst} exists; skipped (use --overwrite to replace it)", file=sys.stderr)
        return 0
    try:
        sam = load_sam(args.src, config=args.config, dtype=_CONVERT_DTYPES.get(args.dtype))
        if args.dst.suffix == ".pth":
            save_meta_checkpoint(sam, args.dst)
        else:
            save_sam(sam, args.dst)
    except CheckpointError as error:
        print(f"sam-convert: error: {error}", file=sys.stderr)
        return 1
    parameters = sum(p.numel() for p in sam.parameters())
    print(f"wrote {args.dst}: {model_type_name(sam.config)}, {sam.dtype}, {parameters / 1e6:.1f}M parameters")
    return 0


# --- sam-amg -----------------------------------------------------------------------------------------------

_AMG_IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".jp2", ".pbm", ".pgm", ".png", ".pnm", ".ppm", ".ras",
                                 ".sr", ".tif", ".tiff", ".webp"})
_AMG_CSV_HEADER = ["id", "area", "bbox_x0", "bbox_y0", "bbox_w", "bbox_h", "point_input_x", "point_input_y",
                   "predicted_iou", "stability_score", "crop_box_x0", "crop_box_y0", "crop_box_w", "crop_box_h"]
# Generator options exposed as flags: (flag, type, help). Defaults are the generator's own.
_AMG_OPTIONS: list[tuple[str, type, str]] = [
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


def amg_main(argv: list[str] | None = None) -> int:
    """``sam-amg``: automatic masks for an image, a folder of images or a list of image paths, written as PNGs
    or COCO RLE JSON, in this process or on Ray (``--engine ray``).

    Resumable: images whose outputs exist are skipped unless ``--overwrite``. Unreadable images are
    reported, listed in ``failures.csv`` and skipped; the exit status is 1 if any image failed, 2 for bad
    arguments or model.
    """
    parser = _amg_parser()
    args = parser.parse_args(argv)
    if args.engine == "ray":
        from sam_core.distributed.amg import run_amg_on_ray  # imports Ray: only for this engine

        return run_amg_on_ray(args, parser)
    source = Path(args.input)
    if not source.exists():
        parser.error(f"--input {args.input} does not exist")
    if source.suffix.lower() in AMG_LIST_SUFFIXES:
        parser.error(f"--input {args.input}: lists of image paths need --engine ray")
    amg_check_output(parser, args)
    images = _amg_list_images(source)
    if not images:
        parser.error(f"no images ({', '.join(sorted(_AMG_IMAGE_SUFFIXES))}) in {args.input}")
    jobs, pending = amg_plan(parser, args, [str(image) for image in images])
    progress = AmgProgress(args, len(jobs), len(pending))
    if pending:
        keep_freed_memory_by_default()
        try:
            generator = amg_generator(args)
        except (CheckpointError, OSError, ValueError) as error:
            print(f"sam-amg: error: {error}", file=sys.stderr)
            return 2
        for source, name in pending:
            progress.record(source, amg_process_image(generator, args, source, name))
    return progress.finish()


AMG_LIST_SUFFIXES = frozenset({".txt", ".csv", ".parquet"})
AMG_FAILURES = "failures.csv"


def amg_plan(parser: argparse.ArgumentParser, args: argparse.Namespace,
             sources: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(every (image, output name), those still to do), with the output folder made and what a killed run left
    of the images' outputs deleted. Both engines start here, so they name and skip outputs alike."""
    args.output.mkdir(parents=True, exist_ok=True)
    jobs = list(zip(sources, _amg_output_names(sources)))
    pending = [(source, name) for source, name in jobs if args.overwrite or not _amg_is_done(args, name)]
    _amg_remove_stale_temporaries(args.output, [name for _, name in jobs])
    return jobs, pending


def amg_check_output(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit (status 2) when the output folder is the input folder: the outputs would be read as inputs."""
    if Path(args.input).is_dir() and args.output.resolve() == Path(args.input).resolve():
        parser.error("--output must differ from the --input folder (the outputs would be read as inputs)")


class AmgImageFailed(Exception):
    """An image that could not be read or segmented; the message is the reason written to failures.csv."""


def amg_process_image(generator: AutomaticMaskGenerator, args: argparse.Namespace, source: str,
                      name: str) -> int | AmgImageFailed:
    """Segment one image and write its outputs; the number of masks written, or why the image failed."""
    image = amg_read_image(source)
    if image is None:
        return AmgImageFailed("cannot read the file as an image")
    try:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        records = generator.generate(image)
        _amg_write_outputs(args, name, image, records)
    except (OSError, ValueError, RuntimeError, cv2.error) as error:
        return AmgImageFailed(str(error))
    return len(records)


def amg_read_image(source: str) -> np.ndarray | None:
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


class AmgProgress:
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

    def record(self, source: str, result: int | AmgImageFailed) -> None:
        """Count one image's result: its number of masks, or why it failed (warned about and listed in
        failures.csv at once, so a killed run leaves its failures so far)."""
        if isinstance(result, AmgImageFailed):
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
        path = self.output / AMG_FAILURES
        if not self.failures:
            path.unlink(missing_ok=True)
            return
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["path", "reason"])
        writer.writerows(self.failures)
        _amg_write_file_atomically(path, text.getvalue().encode("utf-8"))


def _amg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam-amg", description="Segment everything: automatic SAM / SAM 2 masks for an image or a folder of "
                                    "images (the generator's defaults are the model family's).")
    parser.add_argument("--input", required=True,
                        help="an image, or a folder of images (not recursive); with --engine ray also a list of "
                             "image paths or URIs: a .txt file (one a line), or a column of a .csv or .parquet "
                             "file (local or any URI Ray's readers take)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the results (created if needed)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="registry name (vit_b, vit_l, vit_h, sam2.1_hiera_tiny, ...), Hugging Face "
                                       "id or folder, or checkpoint path")
    model.add_argument("--checkpoint", type=Path, help="checkpoint file (Meta .pth or SAM 2 .pt, sam_core "
                                                       ".safetensors, ...)")
    parser.add_argument("--model-type", choices=model_names(),
                        help="model type of --checkpoint (default: inferred from the weights)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--output-format", choices=("png", "coco"), default="png",
                        help="png: a folder per image with one PNG per mask and metadata.csv; "
                             "coco: one JSON per image with COCO RLE masks (default: png)")
    parser.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png with all masks drawn")
    parser.add_argument("--overwrite", action="store_true", help="redo images whose outputs already exist")
    options = parser.add_argument_group("mask generator options (defaults: AutomaticMaskGenerator's)")
    for option, kind, text in _AMG_OPTIONS:
        options.add_argument("--" + option.replace("_", "-"), dest=option, type=kind, help=text)
    options.add_argument("--use-m2m", action="store_true",
                         help="refine each mask once with its own low-res logits as mask input (SAM 2's option)")
    options.add_argument("--single-mask", action="store_true",
                         help="one mask per point instead of the three candidate masks")
    options.add_argument("--point-grids", type=Path,
                         help=".npy (one grid) or .npz (one grid per crop layer, in order) of points in [0, 1]; "
                              "replaces --points-per-side")
    add_engine_arguments(parser, "sam-amg", batch_size=4)
    parser.add_argument("--input-column", default="path",
                        help="column of a .csv or .parquet --input that holds the image paths (default: path)")
    return parser


def amg_generator(args: argparse.Namespace) -> AutomaticMaskGenerator:
    options = {option: getattr(args, option) for option, _, _ in _AMG_OPTIONS if getattr(args, option) is not None}
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


def _amg_list_images(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(path for path in source.iterdir()
                  if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in _AMG_IMAGE_SUFFIXES)


def _amg_output_names(sources: list[str] | list[Path]) -> list[str]:
    """Outputs are named after the image without its suffix, unless two images share that stem."""
    images = [PurePosixPath(str(source).replace(os.sep, "/")) for source in sources]
    stems = Counter(image.stem for image in images)
    return [image.stem if stems[image.stem] == 1 else image.name.replace(".", "_") for image in images]


def _amg_is_done(args: argparse.Namespace, name: str) -> bool:
    main = args.output / name / "metadata.csv" if args.output_format == "png" else args.output / f"{name}.json"
    return main.exists() and (not args.overlay or (args.output / f"{name}_overlay.png").exists())


def _amg_remove_stale_temporaries(output: Path, names: list[str]) -> None:
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


def _amg_write_outputs(args: argparse.Namespace, name: str, image: np.ndarray, records: list[dict]) -> None:
    if args.output_format == "png":
        _amg_write_mask_folder(args.output / name, records)
    else:
        coco_records = [{**record, "segmentation": coco_encode_rle(record["segmentation"])} for record in records]
        _amg_write_file_atomically(args.output / f"{name}.json", json.dumps(coco_records).encode("utf-8"))
    if args.overlay:
        # Largest masks first, so that small ones stay visible on top.
        by_area = sorted(records, key=lambda record: record["area"], reverse=True)
        masks = np.stack([rle_to_mask(record["segmentation"]) for record in by_area]) if by_area else \
            np.zeros((0, *image.shape[:2]), dtype=bool)
        drawn = cv2.cvtColor(draw_masks(image, masks), cv2.COLOR_RGB2BGR)
        _amg_write_file_atomically(args.output / f"{name}_overlay.png", _amg_png_bytes(drawn))


def _amg_write_mask_folder(folder: Path, records: list[dict]) -> None:
    """Write ``<i>.png`` (0/255) per mask and metadata.csv into a temporary folder, then move it into place."""
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        rows = []
        for index, record in enumerate(records):
            mask = rle_to_mask(record["segmentation"]).astype(np.uint8) * 255
            (temporary / f"{index}.png").write_bytes(_amg_png_bytes(mask))
            rows.append([index, record["area"], *record["bbox"], *record["point_coords"][0],
                         record["predicted_iou"], record["stability_score"], *record["crop_box"]])
        with open(temporary / "metadata.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(_AMG_CSV_HEADER)
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


def _amg_write_file_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _amg_png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError("PNG encoding failed")
    return encoded.tobytes()


def export_onnx_main(argv: list[str] | None = None) -> int:
    """``sam-export-onnx --model SRC --output FILE.onnx [--encoder FILE.onnx] [--quantize]``."""
    parser = argparse.ArgumentParser(
        prog="sam-export-onnx", description="Export a SAM model's prompt encoder and mask decoder as one ONNX graph "
                                            "with the inputs and outputs of Meta's scripts/export_onnx_model.py "
                                            "(SAM 2: plus its two high-resolution feature maps).")
    parser.add_argument("--model", required=True,
                        help="registry name (vit_b, sam2.1_hiera_tiny, ...), checkpoint file or Hugging Face id of a "
                             "SAM, MobileSAM, EfficientViT-SAM or SAM 2 model")
    parser.add_argument("--output", required=True, type=Path, help="the decoder graph, FILE.onnx")
    parser.add_argument("--encoder", type=Path, help="also write the image encoder graph to this file")
    parser.add_argument("--quantize", action="store_true",
                        help="also write the decoder with int8 weights beside --output, as <stem>.int8.onnx")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17, as Meta's exporter)")
    args = parser.parse_args(argv)
    from sam_core.onnx_export import OPSET, export_onnx

    try:
        files = export_onnx(args.model, args.output, encoder=args.encoder, quantize=args.quantize,
                            opset=args.opset or OPSET)
    except (CheckpointError, ValueError) as error:
        print(f"sam-export-onnx: error: {error}", file=sys.stderr)
        return 1
    for written in (files.decoder, files.encoder, files.quantized_decoder):
        if written is not None:
            print(f"wrote {written}")
    return 0

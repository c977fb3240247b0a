"""What ``sam-amg`` wrote, read back as training data: per image a folder ``<name>/`` of ``0.png``, ``1.png``, ...
with ``metadata.csv``, or ``<name>.json``, a list of COCO RLE records; ``images`` is the folder that was
``sam-amg``'s ``--input``. Each mask's point prompt is kept as ``AnnotatedObject.point``.

Pairing rules and reported skips: docs/finetune.md."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

from sam_core.finetune.annotations import MaskRules, Skipped, TrainingData
from sam_core.finetune.coco import decode_rles, rle_area, segmentation_to_rle
from sam_core.finetune.folders import FoundObjects, Point, check_mask_files, read_image_entry
from sam_core.finetune.image_files import list_image_files
from sam_core.io.amg_outputs import CSV_HEADER, output_names


def is_amg_output(folder: Path) -> bool:
    """Whether ``folder`` looks like ``sam-amg`` output: a sub-folder with metadata.csv, or a JSON file."""
    return any((entry.is_dir() and (entry / "metadata.csv").is_file()) or
               (entry.is_file() and entry.suffix == ".json") for entry in folder.iterdir())


def read_amg_output(folder: Path, images_folder: Path | None, rules: MaskRules) -> TrainingData:
    """The masks ``sam-amg`` wrote into ``folder`` for the images in ``images_folder`` (its ``--input``)."""
    if images_folder is None:
        raise ValueError(f"{folder} is sam-amg output, which does not hold the source images: pass images=<the "
                         "folder given to sam-amg as --input> (sam-eval: --images)")
    sources = list_image_files(images_folder)
    names = output_names(sources)
    outputs = {entry.name for entry in folder.iterdir() if entry.is_dir() and (entry / "metadata.csv").is_file()}
    json_outputs = {entry.stem for entry in folder.glob("*.json") if entry.is_file()}
    skipped = [Skipped(str(folder / name), f"no source image for this output in {images_folder}")
               for name in sorted((outputs | json_outputs) - set(names))]
    skipped += [Skipped(str(folder / f"{name}.json"), "a PNG folder of the same name is used instead")
                for name in sorted(outputs & json_outputs)]
    images = []
    for image_path, name in zip(sources, names):
        if name in outputs:
            find_objects = partial(_read_png_folder, folder / name, rules)
        elif name in json_outputs:
            find_objects = partial(_read_json, folder / f"{name}.json", rules)
        else:
            skipped.append(Skipped(str(image_path), "no sam-amg output for this image"))
            continue
        image, skips = read_image_entry(name, image_path, f"its sam-amg output {name}", find_objects)
        skipped += skips
        images += [image] if image is not None else []
    return TrainingData(images, skipped)


def _read_png_folder(folder: Path, rules: MaskRules, size: tuple[int, int]) -> FoundObjects:
    metadata = folder / "metadata.csv"
    try:
        with open(metadata, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return None, 0, [Skipped(str(metadata), f"unreadable metadata: {error}")]
    if rows and not set(CSV_HEADER) <= rows[0].keys():
        return None, 0, [Skipped(str(metadata), f"not sam-amg metadata: expected the columns {CSV_HEADER}")]
    paths, points, skipped = [], [], []
    for row in rows:
        try:
            points.append((float(row["point_input_x"]), float(row["point_input_y"])))
        except (TypeError, ValueError):
            skipped.append(Skipped(f"{metadata} id {row['id']}", "malformed point_input_x / point_input_y"))
            continue
        paths.append(folder / f"{row['id']}.png")
    loader, count, skips = check_mask_files(tuple(paths), tuple(points), rules, size)
    return loader, count, skipped + skips


def _read_json(path: Path, rules: MaskRules, size: tuple[int, int]) -> FoundObjects:
    try:
        records = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, 0, [Skipped(str(path), f"unreadable JSON: {error}")]
    if not isinstance(records, list):
        return None, 0, [Skipped(str(path), "not sam-amg output: expected a JSON list of mask records")]
    rles, points, skipped = [], [], []
    for index, record in enumerate(records):
        source = f"{path} record {index}"
        try:
            rle = segmentation_to_rle(record["segmentation"], *size)
            point: Point | None = tuple(float(v) for v in record["point_coords"][0])  # type: ignore[assignment]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            skipped.append(Skipped(source, f"bad record: {error}"))
            continue
        reason = rules.rejection(rle_area(rle), size)
        if reason is None:
            rles.append(rle)
            points.append(point)
        else:
            skipped.append(Skipped(source, reason))
    return partial(decode_rles, tuple(rles), tuple(points)), len(rles), skipped

"""Training-data readers (sam_core.finetune.data) on small files written here, each bad input included.

Expected masks are drawn in the tests with NumPy slicing, so every reader is checked against masks known
independently of the file formats and of pycocotools.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam_core.cli import amg_main
from sam_core.finetune import AnnotatedImage, read_training_data, split_by_image
from sam_core.jobs.samples import write_samples

# pycocotools trips a numpy 2 deprecation warning inside the library itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPES_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "sam_vit_tiny_shapes.safetensors"
HEIGHT, WIDTH = 40, 60  # non-square, so a transposed mask cannot pass


def rectangle(x0: int, y0: int, x1: int, y1: int, size: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """Bool mask with pixels x0 <= x < x1, y0 <= y < y1 set."""
    mask = np.zeros(size, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def picture(seed: int, size: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def save_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask.astype(np.uint8) * 255)


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE, written out by hand: run lengths over the column-major pixels, 0s first."""
    flat = mask.flatten(order="F").astype(int)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def reasons(data, root: Path | None = None) -> dict[str, str]:
    """Skip reasons by source; with ``root``, sources that start with it are given relative to it."""
    prefix = "" if root is None else f"{root}/"
    return {skip.source.removeprefix(prefix): skip.reason for skip in data.skipped}


def masks_of(image: AnnotatedImage) -> list[np.ndarray]:
    return [obj.mask for obj in image.load_objects()]


def assert_masks_equal(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got.dtype == bool and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------------- COCO

def write_coco(tmp_path: Path, annotations: list[dict], images: list[dict] | None = None) -> Path:
    if images is None:
        images = [{"id": 42, "file_name": "b.png", "height": HEIGHT, "width": WIDTH},
                  {"id": 7, "file_name": "sub/a.png", "height": HEIGHT, "width": WIDTH}]
    save_rgb(tmp_path / "img" / "sub" / "a.png", picture(7))
    save_rgb(tmp_path / "img" / "b.png", picture(42))
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1}]}))
    return path


def test_coco_polygons_rle_crowd_and_sparse_ids(tmp_path: Path) -> None:
    uncompressed = rectangle(5, 4, 25, 30)
    compressed = rectangle(30, 10, 58, 38)
    encoded = mask_utils.encode(np.asfortranarray(compressed.astype(np.uint8)))
    annotations = [
        {"id": 1, "image_id": 42, "iscrowd": 0, "segmentation": [[10.0, 5.0, 40.0, 5.0, 40.0, 30.0, 10.0, 30.0]]},
        {"id": 2, "image_id": 7, "iscrowd": 0, "segmentation": uncompressed_rle(uncompressed)},
        {"id": 3, "image_id": 42, "iscrowd": 1, "segmentation": uncompressed_rle(rectangle(0, 0, 30, 20))},
        {"id": 4, "image_id": 7, "iscrowd": 0,
         "segmentation": {"size": [HEIGHT, WIDTH], "counts": encoded["counts"].decode("ascii")}},
    ]
    data = read_training_data(write_coco(tmp_path, annotations), tmp_path / "img")

    assert [image.key for image in data.images] == ["42", "7"]  # ids, in the file's order
    by_key = {image.key: image for image in data.images}
    np.testing.assert_array_equal(by_key["7"].load_image(), picture(7))
    np.testing.assert_array_equal(by_key["42"].load_image(), picture(42))
    assert by_key["7"].size == (HEIGHT, WIDTH) and by_key["7"].num_objects == 2
    assert_masks_equal(masks_of(by_key["7"]), [uncompressed, compressed])
    (polygon,) = masks_of(by_key["42"])
    # A polygon's rasterisation follows pycocotools' edge rule: the drawn rectangle up to its edge pixels.
    assert rectangle(11, 6, 39, 29).sum() <= polygon.sum() <= rectangle(10, 5, 41, 31).sum()
    assert not (polygon & ~rectangle(10, 5, 41, 31)).any() and (rectangle(11, 6, 39, 29) <= polygon).all()
    assert reasons(data) == {"instances.json annotation 3 (image 42)": "crowd region (iscrowd=1)"}


def test_coco_unknown_image_ids_raise(tmp_path: Path) -> None:
    annotations = [{"id": 1, "image_id": 7, "segmentation": uncompressed_rle(rectangle(5, 5, 30, 30))},
                   {"id": 2, "image_id": 99, "segmentation": uncompressed_rle(rectangle(5, 5, 30, 30))},
                   {"id": 3, "image_id": 1000, "segmentation": uncompressed_rle(rectangle(5, 5, 30, 30))}]
    with pytest.raises(ValueError, match="not in 'images': 99, 1000"):
        read_training_data(write_coco(tmp_path, annotations), tmp_path / "img")


def test_coco_bad_inputs_are_reported_and_nothing_else_lost(tmp_path: Path) -> None:
    good = rectangle(5, 5, 30, 30)
    images = [{"id": 7, "file_name": "sub/a.png", "height": HEIGHT, "width": WIDTH},
              {"id": 8, "file_name": "missing.png", "height": HEIGHT, "width": WIDTH},
              {"id": 9, "file_name": "b.png", "height": WIDTH, "width": HEIGHT},  # the file is 60 wide, 40 high
              {"id": 10, "file_name": "b.png", "height": HEIGHT, "width": WIDTH}]
    annotations = [
        {"id": 1, "image_id": 7, "segmentation": uncompressed_rle(good)},
        {"id": 2, "image_id": 7, "segmentation": uncompressed_rle(rectangle(0, 0, 0, 0))},
        {"id": 3, "image_id": 7, "segmentation": uncompressed_rle(good.T[:HEIGHT, :HEIGHT].repeat(2, 1)[:, :50])},
        {"id": 4, "image_id": 7, "segmentation": [[1.0, 2.0]]},
        {"id": 5, "image_id": 8, "segmentation": uncompressed_rle(good)},
        {"id": 6, "image_id": 9, "segmentation": uncompressed_rle(good.T)},
        {"id": 7, "image_id": 10, "segmentation": uncompressed_rle(rectangle(0, 0, 5, 5))},
    ]
    data = read_training_data(write_coco(tmp_path, annotations, images), tmp_path / "img")

    assert [image.key for image in data.images] == ["7"]
    assert_masks_equal(masks_of(data.images[0]), [good])
    found = reasons(data)
    assert found["instances.json annotation 2 (image 7)"] == "empty mask"
    assert found["instances.json annotation 3 (image 7)"].startswith("bad segmentation: RLE size is 50x40")
    assert found["instances.json annotation 4 (image 7)"].startswith("bad segmentation: polygons")
    assert found[f"{tmp_path / 'img' / 'missing.png'} (COCO image 8, 1 annotations)"] == "image file not found"
    assert found[f"{tmp_path / 'img' / 'b.png'} (COCO image 9, 1 annotations)"].startswith(
        "size mismatch: the file is 60x40, the JSON says 40x60")
    assert found["instances.json annotation 7 (image 10)"] == "too small: 25 px, under min_area 100"
    assert found[f"{tmp_path / 'img' / 'b.png'} (COCO image 10, 1 annotations)"] == "no usable objects"
    assert len(data.skipped) == 7


def test_coco_needs_an_image_folder_and_a_coco_file(tmp_path: Path) -> None:
    path = write_coco(tmp_path, [])
    with pytest.raises(ValueError, match="images="):
        read_training_data(path)
    listing = tmp_path / "list.json"
    listing.write_text("[]")
    with pytest.raises(ValueError, match="not a COCO instance file"):
        read_training_data(listing, tmp_path / "img")


# ------------------------------------------------------------------------------------- masks/ and labels/

def test_masks_folder_pairs_by_stem(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for stem, seed in (("a", 1), ("b", 2), ("b_7", 3), ("c", 4)):
        save_rgb(root / "images" / f"{stem}.png", picture(seed))
    a, b1, b2, b10, b7 = (rectangle(0, 0, 20, 20), rectangle(5, 5, 25, 15), rectangle(30, 0, 60, 20),
                          rectangle(10, 20, 50, 40), rectangle(1, 1, 41, 31))
    for name, mask in (("a", a), ("b_1", b1), ("b_10", b10), ("b_2", b2), ("b_7", b7), ("zzz_1", a)):
        save_mask(root / "masks" / f"{name}.png", mask)

    data = read_training_data(root)

    assert [image.key for image in data.images] == ["a", "b", "b_7"]
    by_key = {image.key: image for image in data.images}
    assert_masks_equal(masks_of(by_key["a"]), [a])
    assert_masks_equal(masks_of(by_key["b"]), [b1, b2, b10])  # numeric order, not name order
    assert_masks_equal(masks_of(by_key["b_7"]), [b7])  # the exact stem wins over b's numbering
    np.testing.assert_array_equal(by_key["b"].load_image(), picture(2))
    assert reasons(data) == {str(root / "masks" / "zzz_1.png"): "no image with this stem (or stem_<number>) in "
                                                                "the images folder",
                             str(root / "images" / "c.png"): "no masks"}


def test_masks_folder_bad_files_are_reported_and_nothing_else_lost(tmp_path: Path) -> None:
    root = tmp_path / "data"
    save_rgb(root / "images" / "a.png", picture(1))
    save_rgb(root / "images" / "b.png", picture(2))
    (root / "images" / "broken.jpg").write_bytes(b"not an image at all")
    (root / "images" / "twin.png").write_bytes((root / "images" / "a.png").read_bytes())
    (root / "images" / "twin.jpg").write_bytes((root / "images" / "a.png").read_bytes())
    good = rectangle(10, 10, 30, 30)
    save_mask(root / "masks" / "a_1.png", good)
    save_mask(root / "masks" / "a_2.png", np.zeros((HEIGHT, WIDTH), bool))
    save_mask(root / "masks" / "a_3.png", good.T)  # 40 wide, 60 high
    (root / "masks" / "a_4.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    save_mask(root / "masks" / "a_5.png", rectangle(0, 0, 9, 11))  # 99 px
    save_mask(root / "masks" / "a_6.png", rectangle(0, 0, 10, 10))  # 100 px: kept
    save_mask(root / "masks" / "a_7.png", rectangle(0, 0, 60, 37))  # 92.5 % of the image
    save_mask(root / "masks" / "a_8.png", rectangle(0, 0, 60, 36))  # 90 %: kept
    save_mask(root / "masks" / "b.png", rectangle(0, 0, 60, 40))
    save_mask(root / "masks" / "broken.png", good)

    data = read_training_data(root)

    assert [image.key for image in data.images] == ["a"]
    assert_masks_equal(masks_of(data.images[0]), [good, rectangle(0, 0, 10, 10), rectangle(0, 0, 60, 36)])
    found = reasons(data, root)
    assert found["masks/a_2.png"] == "empty mask"
    assert found["masks/a_3.png"] == "size mismatch: mask is 40x60, image is 60x40 (width x height)"
    assert found["masks/a_4.png"].startswith("unreadable mask: cannot read")
    assert found["masks/a_5.png"] == "too small: 99 px, under min_area 100"
    assert found["masks/a_7.png"] == "too large: covers 92.5% of the image, over max_fraction 0.9"
    assert found["masks/b.png"].startswith("too large") and found["images/b.png"] == "no usable objects"
    assert found["images/broken.jpg and its 1 masks"].startswith("unreadable image: cannot read")
    assert found["images/twin.png"] == found["images/twin.jpg"] == "ambiguous: another file has the stem 'twin'"
    assert len(found) == 10


def test_label_maps_16_bit_and_palette(tmp_path: Path) -> None:
    root = tmp_path / "data"
    save_rgb(root / "images" / "deep.png", picture(1))
    save_rgb(root / "images" / "pal.png", picture(2))
    deep = np.zeros((HEIGHT, WIDTH), np.uint16)
    deep[0:20, 0:20] = 700
    deep[20:40, 30:60] = 65000
    deep[30:35, 0:5] = 3  # 25 px: under min_area
    (root / "labels").mkdir()
    assert cv2.imwrite(str(root / "labels" / "deep.png"), deep)
    assert Image.open(root / "labels" / "deep.png").mode == "I;16"
    palette = np.zeros((HEIGHT, WIDTH), np.uint8)
    palette[5:25, 10:50] = 2
    palette[25:40, 10:50] = 1
    indexed = Image.fromarray(palette, mode="P")
    indexed.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    indexed.save(root / "labels" / "pal.png")

    data = read_training_data(root)

    by_key = {image.key: image for image in data.images}
    assert_masks_equal(masks_of(by_key["deep"]), [deep == 700, deep == 65000])
    assert_masks_equal(masks_of(by_key["pal"]), [palette == 1, palette == 2])
    assert reasons(data) == {f"{root / 'labels' / 'deep.png'} id 3": "too small: 25 px, under min_area 100"}


def test_label_map_bad_inputs(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for stem in ("good", "wrong_size", "colour", "none"):
        save_rgb(root / "images" / f"{stem}.png", picture(3))
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[:20, :20] = 5
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "labels" / "good.png"), labels)
    cv2.imwrite(str(root / "labels" / "wrong_size.png"), labels.T)
    save_rgb(root / "labels" / "colour.png", picture(4))
    cv2.imwrite(str(root / "labels" / "orphan.png"), labels)

    data = read_training_data(root)

    assert [image.key for image in data.images] == ["good"]
    assert_masks_equal(masks_of(data.images[0]), [labels == 5])
    found = reasons(data, root)
    assert found["labels/wrong_size.png"].startswith("size mismatch: label map is 40x60")
    assert found["labels/colour.png"].startswith("unreadable label map") and "single-channel" in found[
        "labels/colour.png"]
    assert found["images/wrong_size.png"] == found["images/colour.png"] == "no usable objects"
    assert found["images/none.png"] == "no label map"
    assert found["labels/orphan.png"] == "no image with this stem in the images folder"
    assert len(data.skipped) == 6


def test_exif_orientation_applies_to_size_and_pixels(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    stored = Image.fromarray(picture(5))  # 60 wide, 40 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees: 40 wide, 60 high
    stored.save(root / "images" / "photo.jpg", exif=exif, quality=95)
    save_mask(root / "masks" / "photo.png", rectangle(0, 0, 30, 30, size=(WIDTH, HEIGHT)))

    (image,) = read_training_data(root).images

    assert image.size == (WIDTH, HEIGHT) and image.load_image().shape == (WIDTH, HEIGHT, 3)


# ------------------------------------------------------------------------------------------------- sam-amg

@pytest.fixture(scope="module")
def amg_outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """sam-samples' square scene, and sam-amg's PNG and COCO outputs for it."""
    root = tmp_path_factory.mktemp("amg")
    samples = root / "samples"
    write_samples(samples)
    for path in samples.iterdir():
        if path.name != "shapes_square.png":
            path.unlink()
    flags = ["--input", str(samples), "--model", str(SHAPES_WEIGHTS), "--points-per-side", "6",
             "--pred-iou-thresh", "0.7", "--stability-score-thresh", "0.9"]
    assert amg_main([*flags, "--output", str(root / "png"), "--overlay"]) == 0
    assert amg_main([*flags, "--output", str(root / "coco"), "--output-format", "coco"]) == 0
    return samples, root / "png", root / "coco"


def test_sam_amg_png_and_coco_outputs(amg_outputs: tuple[Path, Path, Path]) -> None:
    samples, png, coco = amg_outputs
    written = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0
               for path in sorted((png / "shapes_square").glob("*.png"), key=lambda p: int(p.stem))]
    records = json.loads((coco / "shapes_square.json").read_text())
    assert len(written) == len(records) >= 3
    rules = {"min_area": 1, "max_fraction": 1.0}

    (from_png,) = read_training_data(png, samples, **rules).images
    (from_coco,) = read_training_data(coco, samples, **rules).images

    for image in (from_png, from_coco):
        assert image.key == "shapes_square" and image.size == (256, 256)
        np.testing.assert_array_equal(image.load_image(),
                                      cv2.imread(str(samples / "shapes_square.png"))[:, :, ::-1])
        objects = image.load_objects()
        assert_masks_equal([obj.mask for obj in objects], written)
        assert [obj.point for obj in objects] == [tuple(record["point_coords"][0]) for record in records]


def test_sam_amg_output_needs_its_images_and_reports_strays(amg_outputs: tuple[Path, Path, Path],
                                                             tmp_path: Path) -> None:
    samples, png, _ = amg_outputs
    with pytest.raises(ValueError, match="does not hold the source images"):
        read_training_data(png)
    other = tmp_path / "images"
    other.mkdir()
    save_rgb(other / "unrelated.png", picture(1))
    data = read_training_data(png, other)
    assert data.images == []
    assert reasons(data) == {str(png / "shapes_square"): f"no source image for this output in {other}",
                             str(other / "unrelated.png"): "no sam-amg output for this image"}


# ------------------------------------------------------------------------------------------------- records

def test_records_like_a_datasets_split(tmp_path: Path) -> None:
    path_image = tmp_path / "c.png"
    save_rgb(path_image, picture(3))
    save_mask(tmp_path / "c_mask.png", rectangle(0, 0, 20, 20))
    one, two, three = rectangle(5, 5, 25, 25), rectangle(30, 5, 55, 35), rectangle(0, 0, 20, 20)
    records = [
        {"image": Image.fromarray(picture(1)), "mask": Image.fromarray(one.astype(np.uint8) * 255),
         "prompt": json.dumps({"bbox": [5, 5, 24, 24], "point": [14.5, 15]})},
        {"image": picture(2), "masks": np.stack([one, two]),
         "prompt": [{"points": [[10, 10]]}, None]},
        {"image": str(path_image), "label": str(tmp_path / "c_mask.png")},
        {"image": picture(4), "mask": one.astype(np.float32) * 0.9},
    ]

    data = read_training_data(records)

    assert [image.key for image in data.images] == ["0", "1", "2", "3"] and data.skipped == []
    first, second, third, fourth = data.images
    np.testing.assert_array_equal(first.load_image(), picture(1))
    (obj,) = first.load_objects()
    assert obj.box == (5.0, 5.0, 24.0, 24.0) and obj.point == (14.5, 15.0)
    np.testing.assert_array_equal(obj.mask, one)
    objects = second.load_objects()
    assert [o.point for o in objects] == [(10.0, 10.0), None] and [o.box for o in objects] == [None, None]
    assert_masks_equal([o.mask for o in objects], [one, two])
    np.testing.assert_array_equal(third.load_image(), picture(3))
    assert_masks_equal(masks_of(third), [three])
    assert_masks_equal(masks_of(fourth), [one])


def test_record_bad_inputs_are_reported_and_nothing_else_lost() -> None:
    good = rectangle(5, 5, 25, 25)
    records = [
        {"image": picture(1), "masks": [good, good.T, np.zeros_like(good), good],
         "prompt": [None, None, None, "{not json"]},
        {"image": picture(2)},
        "just a string",
        {"image": np.zeros((HEIGHT, WIDTH, 3), np.int64), "mask": good},
        {"image": picture(3), "masks": [good, good], "prompt": {"bbox": [0, 0, 5, 5]}},
        {"image": picture(4), "mask": good, "prompt": {"bbox": [10, 0, 5, 5]}},
    ]

    data = read_training_data(records)

    assert [image.key for image in data.images] == ["0"]
    assert_masks_equal(masks_of(data.images[0]), [good])
    found = reasons(data)
    assert found["record 0 mask 1"].startswith("size mismatch")
    assert found["record 0 mask 2"] == "empty mask"
    assert found["record 0 mask 3"].startswith("bad prompt: not JSON")
    assert found["record 1"] == "no 'mask', 'label' or 'masks'"
    assert found["record 2"] == "not a mapping but a str"
    assert found["record 3"].startswith("unsupported image")
    assert found["record 4"].startswith("one 'prompt' for 2 masks")
    assert found["record 5"] == "no usable objects"
    assert len(data.skipped) == 9


def test_dict_and_unknown_layouts_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pass one split"):
        read_training_data({"train": [], "test": []})
    with pytest.raises(ValueError, match="not a known data layout"):
        read_training_data(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        read_training_data(tmp_path / "nowhere")


def test_images_pickle_for_dataloader_workers(tmp_path: Path) -> None:
    root = tmp_path / "data"
    save_rgb(root / "images" / "a.png", picture(1))
    save_mask(root / "masks" / "a.png", rectangle(5, 5, 25, 25))
    (image,) = read_training_data(root).images
    restored = pickle.loads(pickle.dumps(image))
    assert restored == image
    assert_masks_equal(masks_of(restored), [rectangle(5, 5, 25, 25)])


# --------------------------------------------------------------------------------------------------- split

def keyed_images(count: int) -> list[AnnotatedImage]:
    image = np.zeros((4, 4, 3), np.uint8)
    return [AnnotatedImage.from_arrays(f"img{i:03d}", image, []) for i in range(count)]


def test_split_is_reproducible_disjoint_and_order_free() -> None:
    images = keyed_images(50)
    train, val = split_by_image(images, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert {i.key for i in train}.isdisjoint({i.key for i in val})
    assert {i.key for i in train} | {i.key for i in val} == {i.key for i in images}
    assert [i.key for i in train] == sorted(i.key for i in train)  # the input's order is kept
    again_train, again_val = split_by_image(images[::-1], 0.2, seed=3)
    assert {i.key for i in again_val} == {i.key for i in val}
    assert any({i.key for i in split_by_image(images, 0.2, seed=s)[1]} != {i.key for i in val} for s in range(4, 8))


def test_split_edge_cases() -> None:
    assert [len(part) for part in split_by_image(keyed_images(2), 0.01, seed=0)] == [1, 1]
    assert [len(part) for part in split_by_image(keyed_images(5), 0.0, seed=0)] == [5, 0]
    assert [len(part) for part in split_by_image(keyed_images(1), 0.5, seed=0)] == [1, 0]
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_image(keyed_images(3), 1.0, seed=0)
    with pytest.raises(ValueError, match="repeated"):
        split_by_image(keyed_images(3) * 2, 0.5, seed=0)

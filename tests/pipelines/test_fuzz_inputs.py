"""Property-based tests (hypothesis) of the bad-input contract: every input to ``Predictor``,
``AutomaticMaskGenerator`` and ``sam-amg`` either works, giving outputs of the documented shapes and types, or
raises the documented error (``ValueError`` for bad prompts, images and options; exit status 2 and one
``sam-amg: error`` line for bad arguments) - never an IndexError, a TypeError or a silent wrong shape.

Each property draws valid and invalid inputs and says, from the contract alone, which outcome is due. The
examples are seeded (``tests/conftest.py``: the "ci" profile) and the models are the toy shapes models of SAM
and SAM 2 (weights/), so the whole file runs in about a minute; ``HYPOTHESIS_PROFILE=explore`` draws fresh
examples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st
from make_sam2_shapes_model import DEFAULT_OUTPUT as SAM2_SHAPES_WEIGHTS
from make_shapes_model import DEFAULT_OUTPUT as SHAPES_WEIGHTS
from make_shapes_model import draw_shapes_image

from sam_core import AutomaticMaskGenerator, Predictor, load_sam
from sam_core.cli import amg_main
from sam_core.pipelines.masks import rle_to_mask

# pycocotools' decode trips a numpy 2 deprecation warning inside the library itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Drawn examples per property (and per model family where the test runs on both): a few seconds each.
PROMPT_EXAMPLES, IMAGE_EXAMPLES, GENERATOR_EXAMPLES, AMG_EXAMPLES = 200, 100, 60, 60

IMAGE_HW = (48, 64)
LOW_RES = 64  # both toy models' mask_input side


@pytest.fixture(scope="module")
def model():
    return load_sam(SHAPES_WEIGHTS)


@pytest.fixture(scope="module", params=["sam", "sam2"])
def any_model(request):
    """Both families' toy models (SAM 2's stores float16 weights)."""
    return load_sam(SHAPES_WEIGHTS) if request.param == "sam" else load_sam(SAM2_SHAPES_WEIGHTS, dtype=torch.float32)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return draw_shapes_image(np.random.default_rng(0), *IMAGE_HW, n_shapes=3)[0]


@pytest.fixture(scope="module")
def predictor(any_model, image) -> Predictor:
    predictor = Predictor(any_model)
    predictor.set_image(image)
    return predictor


# ------------------------------------------------------------------------------------------------ prompts
# Each example breaks at most one of the prompts (or none), so that every rule is tried on its own and a third of
# the examples are valid calls.

valid_numbers = st.one_of(st.floats(-300, 300), st.integers(-300, 300), st.sampled_from([1e30, -1e30, 0.0]))
# Not finite, or finite in float64 but infinite once mapped into the model's float32 frame.
invalid_numbers = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]), st.sampled_from([1e300, -1e300, 1e39]))


@st.composite
def point_prompts(draw: st.DrawFn, valid: bool) -> tuple[Any, Any]:
    """(point_coords, point_labels), breaking one rule unless ``valid``."""
    count = draw(st.integers(1, 4))
    labels = draw(st.lists(st.sampled_from([0, 1, True, 1.0]), min_size=count, max_size=count))
    coords = np.array(draw(st.lists(valid_numbers, min_size=2 * count, max_size=2 * count)), dtype=np.float64)
    coords = coords.reshape(count, 2)
    if valid:
        if draw(st.booleans()):
            return None, None
        return (coords.tolist() if draw(st.booleans()) else coords), (np.array(labels) if draw(st.booleans())
                                                                       else labels)
    fault = draw(st.sampled_from(["value", "value", "value", "label", "only_coords", "only_labels", "shape",
                                  "strings", "count", "ragged"]))
    if fault == "value":
        coords[draw(st.integers(0, count - 1)), draw(st.integers(0, 1))] = draw(invalid_numbers)
    elif fault == "label":
        labels[draw(st.integers(0, count - 1))] = draw(st.sampled_from([-1, 2, 0.5, 7]))
    elif fault == "only_coords":
        return coords, None
    elif fault == "only_labels":
        return None, labels
    elif fault == "shape":
        coords = np.zeros(draw(st.sampled_from([(count, 3), (2 * count,), (1, count, 2), (0, 2), ()])))
    elif fault == "strings":
        coords = np.array([["a", "b"]] * count)
    elif fault == "count":
        labels = labels + [1]
    else:
        coords = [[1.0, 2.0], [3.0]]
    return coords, np.array(labels)


@st.composite
def box_prompts(draw: st.DrawFn, valid: bool) -> Any:
    values = draw(st.lists(valid_numbers, min_size=4, max_size=4))
    x0, y0, x1, y1 = values
    values = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
    shape = draw(st.sampled_from([(4,), (1, 4), (2, 2)]))  # any 4 numbers in at most 2 dimensions
    if valid:
        return None if draw(st.booleans()) else np.array(values, dtype=np.float64).reshape(shape)
    fault = draw(st.sampled_from(["value", "value", "order", "count"]))
    if fault == "count":
        return np.zeros(draw(st.sampled_from([(3,), (5,), (1, 1, 4), (0,)])))
    if fault == "value":
        values[draw(st.integers(0, 3))] = draw(invalid_numbers)
    else:
        corner = draw(st.integers(0, 1))
        assume(values[corner] != values[corner + 2])
        values[corner], values[corner + 2] = values[corner + 2], values[corner]
    return np.array(values, dtype=np.float64).reshape(shape)


@st.composite
def mask_prompts(draw: st.DrawFn, valid: bool) -> Any:
    logits = np.random.default_rng(draw(st.integers(0, 100))).normal(0, 8, (1, LOW_RES, LOW_RES))
    logits = logits.astype(draw(st.sampled_from([np.float32, np.float64])))
    if valid:
        return None if draw(st.booleans()) else logits
    if draw(st.booleans()):
        logits[0, 3, 5] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return logits
    return np.zeros(draw(st.sampled_from([(LOW_RES, LOW_RES), (1, 1, LOW_RES, LOW_RES), (1, 256, 256),
                                          (1, LOW_RES, LOW_RES - 1)])))


@st.composite
def prompts(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """(predict's prompt arguments, valid)."""
    broken = draw(st.sampled_from(["none", "points", "box", "mask"]))
    coords, labels = draw(point_prompts(broken != "points"))
    call = dict(point_coords=coords, point_labels=labels, box=draw(box_prompts(broken != "box")),
                mask_input=draw(mask_prompts(broken != "mask")))
    return call, broken == "none"


OVERFLOWING = {"point_coords": np.array([[1e300, 2.0]]), "point_labels": np.array([1]), "box": None,
               "mask_input": None}


@settings(max_examples=PROMPT_EXAMPLES)
@example(case=(OVERFLOWING, False), multimask=True, return_logits=False, normalize_coords=True)
@example(case=({**OVERFLOWING, "point_coords": np.array([[3.0, 1e39]])}, False), multimask=False, return_logits=True,
         normalize_coords=False)
@example(case=({"point_coords": None, "point_labels": None, "box": np.array([0, 0, 5, 1e300]), "mask_input": None},
               False), multimask=True, return_logits=False, normalize_coords=True)
@given(case=prompts(), multimask=st.booleans(), return_logits=st.booleans(), normalize_coords=st.booleans())
def test_predict_works_or_raises_value_error(predictor, case, multimask, return_logits, normalize_coords):
    call, valid = case
    call.update(multimask_output=multimask, return_logits=return_logits, normalize_coords=normalize_coords)
    if not valid:
        with pytest.raises(ValueError):
            predictor.predict(**call)
        return
    masks, scores, low_res = predictor.predict(**call)
    count = 3 if multimask else 1
    assert masks.shape == (count, *IMAGE_HW)
    assert masks.dtype == (np.float32 if return_logits else np.bool_)
    assert scores.shape == (count,) and low_res.shape == (count, LOW_RES, LOW_RES)
    assert np.isfinite(scores).all() and np.isfinite(low_res).all()
    if return_logits:
        assert np.isfinite(masks).all()


# ------------------------------------------------------------------------------------------------- images

DTYPES = [np.uint8, np.uint16, np.float32, np.float64, np.float16, np.int32, np.int8, np.bool_, np.int64]


@st.composite
def images(draw: st.DrawFn) -> tuple[np.ndarray, bool]:
    """(image, valid) for ``set_image``: shapes from 1x1 to very thin, every channel count, many dtypes."""
    height = draw(st.one_of(st.integers(1, 40), st.sampled_from([0, 1, 700])))
    width = draw(st.one_of(st.integers(1, 40), st.sampled_from([0, 1, 700])))
    layout = draw(st.sampled_from(["hw", "hw1", "hw3", "hw3", "hw4", "hw2", "hw5", "chw", "1hw3", "h"]))
    shape = {"hw": (height, width), "hw1": (height, width, 1), "hw3": (height, width, 3), "hw4": (height, width, 4),
             "hw2": (height, width, 2), "hw5": (height, width, 5), "chw": (3, height, width, 3),
             "1hw3": (1, height, width, 3), "h": (height,)}[layout]
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    range_kind = draw(st.sampled_from(["in_range", "in_range", "above_one", "negative", "nan"]))
    if dtype.kind == "f":
        image = rng.random(shape).astype(dtype)
        if image.size and range_kind != "in_range":
            image.flat[0] = {"above_one": 1.5, "negative": -0.25, "nan": np.nan}[range_kind]
    elif dtype.kind == "b":
        image = rng.random(shape) > 0.5
    else:
        info = np.iinfo(dtype)
        image = rng.integers(max(info.min, -1000), min(info.max, 70000), size=shape, endpoint=True).astype(dtype)
    values_ok = (dtype.kind == "u" and dtype.itemsize <= 2) or (dtype.kind == "f" and range_kind == "in_range")
    layout_ok = layout in ("hw", "hw1", "hw3", "hw4")
    return image, values_ok and layout_ok and image.size > 0


@settings(max_examples=IMAGE_EXAMPLES)
@example(case=(np.full((1, 700, 3), 200, np.uint8), True), bgr=False)  # resized to 0 rows by a naive rounding
@example(case=(np.ones((700, 2), np.float32), True), bgr=True)
@example(case=(np.zeros((1, 1), np.uint16), True), bgr=False)
@given(case=images(), bgr=st.booleans())
def test_set_image_converts_or_raises_value_error(any_model, case, bgr):
    image, valid = case
    predictor = Predictor(any_model)
    if not valid:
        with pytest.raises(ValueError):
            predictor.set_image(image, "BGR" if bgr else "RGB")
        assert not predictor.is_image_set
        return
    predictor.set_image(image, "BGR" if bgr else "RGB")
    height, width = image.shape[:2]
    assert predictor.original_size == (height, width)
    masks, scores, _ = predictor.predict(point_coords=np.array([[width / 2, height / 2]]), point_labels=np.array([1]))
    assert masks.shape == (3, height, width) and np.isfinite(scores).all()


def test_set_image_rejects_unknown_formats_and_non_arrays(model):
    predictor = Predictor(model)
    with pytest.raises(ValueError, match="image_format"):
        predictor.set_image(np.zeros((4, 4, 3), np.uint8), "HSV")
    with pytest.raises(ValueError, match="numpy array"):
        predictor.set_image([[0, 0, 0]])


# ------------------------------------------------------------------------------------- generator options

GENERATOR_IMAGE_HW = (24, 32)


def check_records(records: list[dict], height: int, width: int, output_mode: str) -> None:
    """Every record has the documented fields, with a mask of the image's size whose area and box match (an
    empty mask's stability score is 0 / 0, NaN, as in the reference)."""
    for record in records:
        assert set(record) == {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score",
                               "crop_box"}
        segmentation = record["segmentation"]
        if output_mode == "binary_mask":
            mask = segmentation
        elif output_mode == "uncompressed_rle":
            mask = rle_to_mask(segmentation)
        else:
            from pycocotools import mask as mask_utils

            mask = mask_utils.decode(segmentation).astype(bool)
        assert mask.shape == (height, width) and mask.dtype == np.bool_
        assert record["area"] == int(mask.sum())
        x, y, w, h = record["bbox"]
        rows, cols = np.nonzero(mask)
        if record["area"]:
            assert (x, y, x + w, y + h) == (cols.min(), rows.min(), cols.max(), rows.max())
            assert math.isfinite(record["stability_score"])
        else:  # thresholds <= 0 switch the filters off, and empty masks pass, as in the reference
            assert (x, y, w, h) == (0, 0, 0, 0)
        assert math.isfinite(record["predicted_iou"])
        cx, cy, cw, ch = record["crop_box"]
        assert 0 <= cx and 0 <= cy and cx + cw <= width and cy + ch <= height
        assert len(record["point_coords"]) == 1 and len(record["point_coords"][0]) == 2


def generator_options_valid(options: dict[str, Any]) -> bool:
    """What the contract accepts: counts >= 1 (>= 0 for layers and areas), a grid that leaves points in every
    crop layer, thresholds that are numbers (not NaN), a finite non-negative stability offset, an overlap ratio
    in [0, 1)."""
    layers = options.get("crop_n_layers", 0)
    if layers < 0:
        return False
    if options.get("point_grids") is None:
        side, factor = options.get("points_per_side", 32), options.get("crop_n_points_downscale_factor", 1)
        if side < 1 or factor < 1 or int(side / factor**layers) < 1:
            return False
    else:
        grids = options["point_grids"]
        if len(grids) < layers + 1 or not all(g.ndim == 2 and g.shape[1] == 2 and len(g) for g in grids):
            return False
    thresholds = [options.get(name) for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh",
                                                 "crop_nms_thresh", "mask_threshold")]
    offset, overlap = options.get("stability_score_offset"), options.get("crop_overlap_ratio", 0.3)
    return (not any(v is not None and math.isnan(v) for v in thresholds)  # infinities switch a filter off or on
            and (offset is None or 0 <= offset < math.inf) and 0 <= overlap < 1
            and options.get("points_per_batch", 64) >= 1
            and options.get("min_mask_region_area", 0) >= 0
            and options.get("output_mode", "binary_mask") in ("binary_mask", "uncompressed_rle", "coco_rle"))


# One bad value per field that has a range (each example breaks at most one).
GENERATOR_FAULTS = {
    "crop_n_layers": [-1], "points_per_side": [0, -1], "crop_n_points_downscale_factor": [0],
    "pred_iou_thresh": [math.nan], "stability_score_thresh": [math.nan], "box_nms_thresh": [math.nan],
    "stability_score_offset": [-1.0, math.nan, math.inf], "crop_overlap_ratio": [-0.5, 1.0, math.nan],
    "crop_nms_thresh": [math.nan], "points_per_batch": [0, -2], "min_mask_region_area": [-1],
    "output_mode": ["png"], "mask_threshold": [math.nan],
    "point_grids": [[], [np.zeros((0, 2))], [np.zeros((2, 3))], [np.zeros(4)]],
}


@st.composite
def generator_options(draw: st.DrawFn) -> dict[str, Any]:
    """Options for AutomaticMaskGenerator: small grids (fast), any values in range, and (half the time) one
    field broken."""
    options: dict[str, Any] = {"crop_n_layers": draw(st.sampled_from([0, 0, 1]))}
    if draw(st.booleans()):
        options.update(points_per_side=draw(st.integers(1, 4)), crop_n_points_downscale_factor=draw(st.integers(1, 2)))
    else:
        rng = np.random.default_rng(draw(st.integers(0, 100)))
        options.update(points_per_side=None, point_grids=[rng.uniform(0, 1, (draw(st.integers(1, 5)), 2))
                                                          for _ in range(options["crop_n_layers"] + 1)])
    for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
        if (value := draw(st.one_of(st.none(), st.floats(-0.5, 1.5), st.sampled_from([math.inf, -math.inf])))) \
                is not None:
            options[name] = value
    options.update(
        stability_score_offset=draw(st.sampled_from([None, 0.0, 1.0, 2.5])),
        crop_overlap_ratio=draw(st.sampled_from([512 / 1500, 0.0, 0.9])),
        crop_nms_thresh=draw(st.sampled_from([0.7, 0.0, 1.0])),
        points_per_batch=draw(st.sampled_from([64, 1, 3])),
        min_mask_region_area=draw(st.sampled_from([0, 5, 100])),
        output_mode=draw(st.sampled_from(["binary_mask", "uncompressed_rle", "coco_rle"])),
        multimask_output=draw(st.booleans()),
        mask_threshold=draw(st.sampled_from([None, 0.0, -2.0, 3.0, -math.inf])),
        use_m2m=draw(st.booleans()),
    )
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(GENERATOR_FAULTS)))
        if field == "point_grids":
            options["points_per_side"] = None
        elif field in ("points_per_side", "crop_n_points_downscale_factor") and options["points_per_side"] is None:
            options.update(points_per_side=2, point_grids=None)
        options[field] = draw(st.sampled_from(GENERATOR_FAULTS[field]))
    return options


@settings(max_examples=GENERATOR_EXAMPLES)
@given(options=generator_options())
def test_generator_options_work_or_raise_value_error(any_model, options):
    if not generator_options_valid(options):
        with pytest.raises(ValueError):
            AutomaticMaskGenerator(any_model, **options)
        return
    generator = AutomaticMaskGenerator(any_model, **options)
    image = draw_shapes_image(np.random.default_rng(1), *GENERATOR_IMAGE_HW, n_shapes=2)[0]
    records = generator.generate(image)
    event("masks found" if records else "no masks")  # shown by --hypothesis-show-statistics
    check_records(records, *GENERATOR_IMAGE_HW, options["output_mode"])


# ------------------------------------------------------------------------------------------ sam-amg flags

@pytest.fixture(scope="module")
def amg_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("amg_in")
    image = draw_shapes_image(np.random.default_rng(2), 40, 56, n_shapes=3)[0]
    cv2.imwrite(str(folder / "scene.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


# Each flag: the generator option it sets and how argparse reads it.
AMG_FLAGS = {"--points-per-side": ("points_per_side", int), "--points-per-batch": ("points_per_batch", int),
             "--pred-iou-thresh": ("pred_iou_thresh", float),
             "--stability-score-thresh": ("stability_score_thresh", float),
             "--stability-score-offset": ("stability_score_offset", float),
             "--box-nms-thresh": ("box_nms_thresh", float), "--crop-n-layers": ("crop_n_layers", int),
             "--crop-nms-thresh": ("crop_nms_thresh", float), "--crop-overlap-ratio": ("crop_overlap_ratio", float),
             "--crop-n-points-downscale-factor": ("crop_n_points_downscale_factor", int),
             "--min-mask-region-area": ("min_mask_region_area", int), "--mask-threshold": ("mask_threshold", float)}
# Strings a user might type: good ones, out-of-range ones and garbage ("1e309" parses as an infinite float).
FLAG_VALUES = ["1", "2", "0.5", "0.25", "-1", "0", "nan", "inf", "1e309", "abc", "", "2.5", "--x"]
SWITCHES = ["--overlay", "--use-m2m", "--single-mask", "--overwrite"]


def parse(text: str, kind: type) -> Any:
    """``kind(text)`` as argparse calls it, or None where argparse refuses the value."""
    if text.startswith("--"):
        return None  # read as a flag: the option misses its value
    try:
        return kind(text)
    except ValueError:
        return None


@st.composite
def amg_arguments(draw: st.DrawFn) -> tuple[list[str], bool]:
    """(sam-amg arguments after --input/--output, whether the contract accepts them)."""
    chosen = {"--points-per-side": draw(st.sampled_from(["2", "3"]))}  # a small grid unless the draw replaces it
    for flag in draw(st.lists(st.sampled_from(sorted(AMG_FLAGS)), max_size=4, unique=True)):
        chosen[flag] = draw(st.sampled_from(FLAG_VALUES))
    if chosen.get("--crop-n-layers") not in (None, "0", "1", "-1"):
        chosen["--crop-n-layers"] = "1"  # bounded work: crops of crops of a 40x56 image hold nothing new
    if parse(chosen["--points-per-side"], int) is not None and parse(chosen["--points-per-side"], int) > 3:
        chosen["--points-per-side"] = "3"
    args = [item for flag, value in chosen.items() for item in (flag, value)]
    parsed = {AMG_FLAGS[flag][0]: parse(value, AMG_FLAGS[flag][1]) for flag, value in chosen.items()}
    valid = all(value is not None for value in parsed.values()) and generator_options_valid(parsed)
    args += draw(st.lists(st.sampled_from(SWITCHES), max_size=2, unique=True))
    args += ["--output-format", draw(st.sampled_from(["png", "coco"]))]
    model = draw(st.sampled_from(["checkpoint", "checkpoint", "missing", "vit_b", "vit_tiny"]))
    args += ["--checkpoint", "no/such/file.safetensors" if model == "missing" else str(SHAPES_WEIGHTS)]
    if model.startswith("vit"):
        args += ["--model-type", model]
    return args, valid and model in ("checkpoint", "vit_tiny")


@settings(max_examples=AMG_EXAMPLES)
@given(case=amg_arguments())
def test_sam_amg_arguments_work_or_exit_2_with_one_error_line(amg_input, tmp_path_factory, capsys, case):
    args, valid = case
    output = tmp_path_factory.mktemp("amg_out")
    try:
        code = amg_main(["--input", str(amg_input), "--output", str(output), *args])
    except SystemExit as exit_:  # argparse: unparsable values
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if not valid:
        assert code == 2 and "error:" in err
        return
    assert code == 0, err
    if args[args.index("--output-format") + 1] == "coco":
        assert isinstance(json.loads((output / "scene.json").read_text()), list)
    else:
        assert (output / "scene" / "metadata.csv").is_file()
    if "--overlay" in args:
        assert cv2.imread(str(output / "scene_overlay.png")).shape[:2] == (40, 56)
    assert not [p for p in output.iterdir() if p.name.startswith(".")]  # no temporary files left behind

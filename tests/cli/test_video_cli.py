"""The sam-video console script: outputs, formats, overlay video, resuming, and every bad input's single error.

The model is Meta's SAM2VideoPredictor with the tiny ``sam2_hiera_test`` shapes, random video modules and the
image weights of ``weights/sam2_hiera_test_shapes.safetensors`` (so that masks follow the prompts), saved as a
Meta ``.pt``; sam-video loads it into sam_core's VideoPredictor. Its written masks are compared with what
``sam_core.build_sam2_video_predictor`` returns through the Python API for the same prompts and passes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from safetensors.torch import load_file

from sam_core import SAM2_CONFIGS, build_sam2_video_predictor
from sam_core.cli.video import main
from sam_core.models.sam2.parity import make_reference_video_predictor, save_reference_pt

# pycocotools' decode trips a numpy 2 deprecation warning inside the library itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[2]
SHAPES_WEIGHTS = REPO / "weights" / "sam2_hiera_test_shapes.safetensors"
CONFIG = SAM2_CONFIGS["sam2_hiera_test"]
NUM_FRAMES, HEIGHT, WIDTH = 8, 96, 128
OBJECTS = [1, 2, 3]
PROMPTS = {"objects": OBJECTS, "prompts": [
    {"frame": 2, "object": 1, "points": [[35, 35]], "labels": [1]},
    {"frame": 4, "object": 2, "box": [68, 35, 112, 65], "points": [[30, 35]], "labels": [0]},
    {"frame": 5, "object": 3, "mask": "masks/object3.png"},
]}
MASK_3 = (slice(70, 90), slice(5, 45))  # a band at the bottom of frame 5


def draw_clip(folder: Path) -> Path:
    """A rectangle moving right, an ellipse moving down and a bar at the bottom, over smooth noise."""
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, size=(HEIGHT // 8, WIDTH // 8, 3)).astype(np.uint8)
    background = np.asarray(Image.fromarray(background).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR))
    ys, xs = np.mgrid[:HEIGHT, :WIDTH]
    folder.mkdir(parents=True)
    for t in range(NUM_FRAMES):
        frame = background.copy()
        frame[20:50, 10 + 5 * t:40 + 5 * t] = (220, 40, 40)
        frame[((xs - 90) / 18.0) ** 2 + ((ys - (30 + 4 * t)) / 12.0) ** 2 <= 1] = (40, 200, 60)
        frame[70:90, 5:45] = (230, 230, 60)
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The model file, the clip's folder and the prompts file."""
    root = tmp_path_factory.mktemp("video_cli")
    reference = make_reference_video_predictor(CONFIG, seed=1)
    shapes = {name: tensor.float() for name, tensor in load_file(str(SHAPES_WEIGHTS)).items()}
    assert not reference.load_state_dict(shapes, strict=False).unexpected_keys
    model = save_reference_pt(reference, root / "sam2_hiera_test_shapes.pt")
    (root / "masks").mkdir()
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[MASK_3] = 255
    cv2.imwrite(str(root / "masks" / "object3.png"), mask)
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    return {"model": model, "video": draw_clip(root / "frames"), "prompts": prompts, "root": root}


@pytest.fixture(scope="module")
def expected(inputs: dict[str, Path]) -> dict[tuple[int, int], np.ndarray]:
    """(frame, object) -> mask from the Python API: forward from frame 2 to the end, then back to frame 0."""
    predictor = build_sam2_video_predictor(CONFIG, inputs["model"])
    state = predictor.init_state(str(inputs["video"]))
    for prompt in PROMPTS["prompts"]:
        if "mask" in prompt:
            mask = cv2.imread(str(inputs["root"] / prompt["mask"]), cv2.IMREAD_GRAYSCALE) > 0
            predictor.add_new_mask(state, prompt["frame"], prompt["object"], mask)
        else:
            predictor.add_new_points_or_box(state, prompt["frame"], prompt["object"], points=prompt.get("points"),
                                            labels=prompt.get("labels"), box=prompt.get("box"))
    masks = {}
    for reverse in (False, True):
        for frame, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=2, reverse=reverse):
            for object_id, mask in zip(obj_ids, (logits[:, 0] > 0).numpy()):
                masks[frame, object_id] = mask
    assert len(masks) == NUM_FRAMES * len(OBJECTS)
    # Not trivial: each object covers part of the frame somewhere, and the objects differ.
    for object_id in OBJECTS:
        assert any(0 < masks[t, object_id].sum() < HEIGHT * WIDTH for t in range(NUM_FRAMES)), object_id
    assert not np.array_equal(masks[3, 1], masks[3, 2])
    return masks


def arguments(inputs: dict[str, Path], output: Path, *extra: str) -> list[str]:
    return ["--model", str(inputs["model"]), "--video", str(inputs["video"]), "--prompts", str(inputs["prompts"]),
            "--output", str(output), *extra]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "sam_core.cli.video", *args], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def png_run(inputs: dict[str, Path]) -> tuple[Path, subprocess.CompletedProcess]:
    output = inputs["root"] / "out_png"
    return output, run_cli(*arguments(inputs, output, "--overlay"))


def read_png_masks(folder: Path) -> dict[tuple[int, int], np.ndarray]:
    masks = {}
    for path in folder.glob("*/*.png"):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and set(np.unique(image)) <= {0, 255}, path
        masks[int(path.parent.name), int(path.stem)] = image > 0
    return masks


def test_png_masks_are_the_predictors(png_run, expected):
    output, done = png_run
    assert done.returncode == 0, done.stderr
    assert "sam-video: 8 frames x 3 objects: 24 mask files written" in done.stdout
    assert sorted(p.name for p in output.iterdir()) == [f"{t:05d}" for t in range(NUM_FRAMES)] + ["overlay.mp4",
                                                                                                   "run.json"]
    written = read_png_masks(output)
    assert written.keys() == expected.keys()
    for key, mask in expected.items():
        assert np.array_equal(written[key], mask), key


def test_overlay_video_shows_the_masks(png_run, inputs, expected):
    output, done = png_run
    assert done.returncode == 0, done.stderr
    capture = cv2.VideoCapture(str(output / "overlay.mp4"))
    frames = []
    while (read := capture.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    capture.release()
    assert len(frames) == NUM_FRAMES and frames[0].shape == (HEIGHT, WIDTH, 3)
    for t in (0, 3, 7):
        source = np.asarray(Image.open(inputs["video"] / f"{t:05d}.jpg").convert("RGB")).astype(np.float32)
        change = np.abs(frames[t].astype(np.float32) - source).sum(axis=2)
        covered = np.any([expected[t, object_id] for object_id in OBJECTS], axis=0)
        # Blended colour where a mask is; elsewhere only compression noise (and outlines, prompt markers).
        assert change[covered].mean() > 3 * np.median(change[~covered]) + 20, t


def test_coco_output_holds_the_same_masks(inputs, expected):
    output = inputs["root"] / "out_coco"
    done = run_cli(*arguments(inputs, output, "--output-format", "coco"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in output.iterdir()) == [f"{t:05d}.json" for t in range(NUM_FRAMES)] + ["run.json"]
    for t in range(NUM_FRAMES):
        records = json.loads((output / f"{t:05d}.json").read_text())
        assert [record["object_id"] for record in records] == OBJECTS
        for record in records:
            mask = mask_utils.decode(record["segmentation"]).astype(bool)
            assert np.array_equal(mask, expected[t, record["object_id"]])
            ys, xs = np.nonzero(mask)
            assert record["frame"] == t and record["area"] == mask.sum()
            assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_resume_writes_only_what_is_missing(png_run, inputs, tmp_path):
    finished, done = png_run
    assert done.returncode == 0, done.stderr
    output = tmp_path / "out"
    shutil.copytree(finished, output)
    before = {path: path.stat().st_mtime_ns for path in output.rglob("*") if path.is_file()}
    again = run_cli(*arguments(inputs, output, "--overlay"))
    assert again.returncode == 0, again.stderr
    assert "0 mask files written, all there already" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in output.rglob("*") if path.is_file()} == before
    # A killed run: one mask missing, a temporary left beside it. Tracking runs again; only that file is written.
    original = (output / "00006" / "2.png").read_bytes()
    (output / "00006" / "2.png").unlink()
    (output / "00006" / ".2.png.x1y2.part").write_bytes(b"half a png")
    again = run_cli(*arguments(inputs, output))
    assert again.returncode == 0, again.stderr
    assert "1 mask files written" in again.stdout
    assert (output / "00006" / "2.png").read_bytes() == original
    assert not list(output.rglob("*.part"))
    unchanged = [path for path in before if path.name != "2.png" or path.parent.name != "00006"]
    assert all(path.stat().st_mtime_ns == before[path] for path in unchanged if path.name != "run.json")


def test_folder_of_another_run_is_refused(png_run, inputs, tmp_path, capsys):
    finished, done = png_run
    assert done.returncode == 0, done.stderr
    other = tmp_path / "prompts.json"
    other.write_text(json.dumps([{"frame": 0, "object": 1, "points": [[30, 30]], "labels": [1]}]))
    args = ["--model", "never-loaded.pt", "--video", str(inputs["video"]), "--prompts", str(other),
            "--output", str(finished)]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "holds the masks of another run (model, passes, prompts differ" in error and "--overwrite" in error


def test_direction_start_and_max_frames(inputs, expected, tmp_path, capsys):
    """Forward only, 2 frames past frame 2: frames 2-4 are written, nothing else. They are the full run's masks
    (its forward pass), but on frame 2 for objects 2 and 3, which the full run tracks again backward."""
    output = tmp_path / "out"
    assert main(arguments(inputs, output, "--direction", "forward", "--max-frames", "2")) == 0
    assert "3 frames x 3 objects: 9 mask files written" in capsys.readouterr().out
    written = read_png_masks(output)
    assert sorted(written) == [(t, o) for t in (2, 3, 4) for o in OBJECTS]
    assert all(np.array_equal(mask, expected[t, o]) for (t, o), mask in written.items() if t > 2 or o == 1)


# ------------------------------------------------------------------------------------------------ bad inputs

def entry(**fields: object) -> dict:
    return {"frame": 1, "object": 1, "points": [[10, 10]], "labels": [1], **fields}


BAD_PROMPTS = {
    "frame out of range": ([entry(frame=NUM_FRAMES)], "\"frame\" must be a frame index in 0..7, got 8"),
    "negative frame": ([entry(frame=-1)], "got -1"),
    "frame not an integer": ([entry(frame="3")], "got '3'"),
    "unknown object": ({"objects": [1, 2], "prompts": [entry(), entry(frame=3, object=5)]},
                       "prompt 1 (frame 3, object 5): object 5 is not among the declared objects [1, 2]"),
    "declared object without prompt": ({"objects": [1, 2], "prompts": [entry()]},
                                       "object 2 is declared but no prompt gives it"),
    "object id not an integer": ([entry(object="car")], "\"object\" must be an object id"),
    "object id negative": ([entry(object=-2)], "\"object\" must be an object id"),
    "point not a pair": ([entry(points=[[10, 10, 3]])], "\"points\" must be a non-empty list of [x, y] pairs"),
    "point NaN": ([entry(points=[[float("nan"), 10]])], "[x, y] pairs of finite numbers"),
    "no points": ([entry(points=[], labels=[])], "non-empty list"),
    "point outside the frame": ([entry(points=[[10, HEIGHT + 50]])], "fall outside the 128x96 frame"),
    "label not 0/1": ([entry(labels=[2])], "\"labels\" must be a list of 0 (background) and 1 (object), got [2]"),
    "label a float": ([entry(labels=[1.0])], "\"labels\" must be a list of 0"),
    "labels count": ([entry(labels=[1, 0])], "1 points but 2 labels"),
    "points without labels": ([{"frame": 1, "object": 1, "points": [[10, 10]]}], "\"points\" and \"labels\" go"),
    "box of 3 numbers": ([{"frame": 1, "object": 1, "box": [1, 2, 3]}], "four finite numbers"),
    "box reversed": ([{"frame": 1, "object": 1, "box": [50, 10, 20, 40]}], "x1 < x0 or y1 < y0"),
    "box outside the frame": ([{"frame": 1, "object": 1, "box": [0, 0, WIDTH + 1, 10]}], "reaches outside"),
    "no prompt": ([{"frame": 1, "object": 1}], "gives no \"points\""),
    "mask with points": ([entry(mask="masks/object3.png")], "cannot also have points or a box"),
    "mask missing": ([{"frame": 1, "object": 1, "mask": "masks/nothing.png"}], "no such file"),
    "mask not an image": ([{"frame": 1, "object": 1, "mask": "prompts.json"}], "not an image file"),
    "mask of another size": ([{"frame": 1, "object": 1, "mask": "masks/small.png"}],
                             "is 40x30; the frames are 128x96"),
    "mask empty": ([{"frame": 1, "object": 1, "mask": "masks/empty.png"}], "is empty"),
    "misspelt key": ([entry(lables=[1])], "unknown keys ['lables']"),
    "same frame and object twice": ([entry(), entry(points=[[20, 20]])], "repeats the frame and object of prompt 0"),
    "empty list": ([], "no prompts"),
    "not a list": ("frame 3", "the top level must be a list of prompts"),
    "prompt not an object": ([[1, 2]], "must be an object with"),
}


@pytest.mark.parametrize("case", list(BAD_PROMPTS))
def test_bad_prompts_give_one_error_before_any_work(case, inputs, tmp_path, capsys):
    """The model path does not exist: the prompts are rejected before it would be loaded; nothing is written."""
    content, message = BAD_PROMPTS[case]
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "small.png"), np.full((30, 40), 255, np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "empty.png"), np.zeros((HEIGHT, WIDTH), np.uint8))
    shutil.copy(inputs["root"] / "masks" / "object3.png", tmp_path / "masks")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(content))
    output = tmp_path / "out"
    status = main(["--model", str(tmp_path / "never-loaded.pt"), "--video", str(inputs["video"]),
                   "--prompts", str(prompts), "--output", str(output)])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("sam-video: error: prompts file") and error.count("error:") == 1
    assert message in error
    assert not output.exists()


def test_every_problem_of_a_file_in_the_one_error(inputs, tmp_path, capsys):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([entry(frame=20), entry(frame=2, labels=[3]), entry(frame=3, box=[5, 5, 1, 1])]))
    assert main(["--model", "never-loaded.pt", "--video", str(inputs["video"]), "--prompts", str(prompts),
                 "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "3 problems" in error and "got 20" in error and "got [3]" in error and "x1 < x0" in error


def test_invalid_json(inputs, tmp_path, capsys):
    prompts = tmp_path / "prompts.json"
    prompts.write_text('[{"frame": 1,')
    assert main(["--model", "never-loaded.pt", "--video", str(inputs["video"]), "--prompts", str(prompts),
                 "--output", str(tmp_path / "out")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(("change", "message"), [
    ({"--video": "missing"}, "--video"),
    ({"--video": "empty"}, "no JPEG frames"),
    ({"--start-frame": "8"}, "--start-frame 8 is outside the video's frames 0..7"),
    ({"--max-frames": "-1"}, "--max-frames must be >= 0"),
    ({"--direction": "reverse", "--start-frame": "0"}, "--direction reverse from frame 0 tracks nothing"),
])
def test_bad_video_and_options(change, message, inputs, tmp_path, capsys):
    options = {"--model": "never-loaded.pt", "--video": str(inputs["video"]), "--prompts": str(inputs["prompts"]),
               "--output": str(tmp_path / "out"), **change}
    if options["--video"] in ("missing", "empty"):
        (tmp_path / "empty").mkdir()
        options["--video"] = str(tmp_path / options["--video"])
    assert main([item for pair in options.items() for item in pair]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sam-video: error:") and message in error
    assert not (tmp_path / "out").exists()


def test_model_that_is_not_sam2(inputs, tmp_path, capsys):
    from sam_core import build_sam, save_sam

    sam = save_sam(build_sam("vit_tiny"), tmp_path / "sam.safetensors")
    args = arguments(inputs, tmp_path / "out")
    args[1] = str(sam)
    assert main(args) == 2
    assert "holds a sam model; video tracking needs SAM 2" in capsys.readouterr().err

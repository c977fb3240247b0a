"""The sample inputs (sam_core.jobs.samples) and the README's first command on them.

The recovery test runs the README's own `sam-samples` and `sam-amg` arguments (read from README.md) in
process, and scores the written mask PNGs against the scenes' rendered ground-truth masks, which were
drawn independently of any model.
"""

from __future__ import annotations

import hashlib
import shlex
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from make_shapes_model import draw_shapes_image as training_renderer

from sam_core.cli import amg_main
from sam_core.cli.samples import main as samples_main
from sam_core.jobs import samples

README = Path(__file__).resolve().parents[2] / "README.md"
SCENE_NAMES = ["shapes_square", "shapes_landscape", "shapes_portrait", "shapes_wide"]
PHOTO_NAMES = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
# Measured with the README's options: 15 of 18 shapes matched at IoU >= 0.8 (square 4/4, landscape 5/5,
# portrait 2/4, wide 4/5), and 6 of the 21 masks matching no shape. The bounds leave room for float
# differences between machines flipping a borderline mask.
MIN_RECOVERED_FRACTION = 0.75
MATCH_IOU = 0.8


def readme_command_1() -> dict[str, list[str]]:
    """The README's first quick-start command, as {program: argv} for the sam-samples and sam-amg steps."""
    text = README.read_text()
    quick_start = text[text.index("## Quick start"):]
    line = next(line for line in quick_start.splitlines() if line.startswith("python3 -m venv"))
    steps = {}
    for step in line.split("&&"):
        words = shlex.split(step)
        steps[Path(words[0]).name] = words[1:]
    return steps


def replace_option(argv: list[str], flag: str, value: str) -> list[str]:
    index = argv.index(flag)
    return [*argv[:index + 1], value, *argv[index + 2:]]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """Run the README's sam-samples and sam-amg steps, with the folders moved into a temporary directory."""
    steps = readme_command_1()
    root = tmp_path_factory.mktemp("readme")
    sample_argv = steps["sam-samples"]
    assert sample_argv == ["samples"], "the test maps the README's sample folder to a temporary one"
    assert samples_main([str(root / "samples")]) == 0
    amg_argv = replace_option(steps["sam-amg"], "--input", str(root / "samples"))
    amg_argv = replace_option(amg_argv, "--output", str(root / "out"))
    code = amg_main(amg_argv)
    return root / "samples", root / "out", code


def test_training_script_uses_this_renderer() -> None:
    assert training_renderer is samples.draw_shapes_image


def test_scenes_are_deterministic_and_legible() -> None:
    first, second = samples.shapes_scenes(), samples.shapes_scenes()
    assert [scene.name for scene in first] == SCENE_NAMES
    sizes = {scene.image.shape[:2] for scene in first}
    assert len(sizes) == len(first), "each scene has its own size"
    for a, b in zip(first, second):
        assert a.image.dtype == np.uint8 and a.image.ndim == 3 and a.image.shape[2] == 3
        np.testing.assert_array_equal(a.image, b.image)
        assert len(a.masks) == len(b.masks) >= 4
        for mask_a, mask_b in zip(a.masks, b.masks):
            np.testing.assert_array_equal(mask_a, mask_b)
        # Ground truth is consistent with the picture: disjoint masks, each one flat colour.
        assert np.sum(a.masks, axis=0).max() == 1
        for mask in a.masks:
            assert mask.dtype == bool and mask.shape == a.image.shape[:2]
            assert len(np.unique(a.image[mask], axis=0)) == 1


def test_draw_shapes_image_is_unchanged() -> None:
    """The renderer the shipped weights were trained on: pixels, masks and the number of draws it takes
    from the generator (which fixes every later training batch) are pinned, so that
    tests/make_shapes_model.py keeps reproducing weights/sam_vit_tiny_shapes.safetensors."""
    digest = hashlib.sha256()
    for seed, (height, width, n_shapes) in enumerate([(60, 80, 3), (96, 64, 6), (128, 128, 4)]):
        rng = np.random.default_rng(seed)
        image, masks = samples.draw_shapes_image(rng, height, width, n_shapes)
        digest.update(image.tobytes())
        digest.update(np.array(masks).tobytes())
        digest.update(rng.integers(2**32, size=1).tobytes())
    assert digest.hexdigest()[:16] == "f82d99351ae99cbd"


def test_write_samples_writes_pngs_matching_the_scenes(tmp_path: Path) -> None:
    paths = samples.write_samples(tmp_path / "new")
    assert [path.name for path in paths] == [f"{name}.png" for name in SCENE_NAMES]
    assert sorted(path.name for path in (tmp_path / "new").iterdir()) == sorted(path.name for path in paths)
    for path, scene in zip(paths, samples.shapes_scenes()):
        read = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(read, scene.image)  # lossless: the ground truth fits pixel for pixel


def test_write_samples_again_leaves_identical_files(tmp_path: Path) -> None:
    paths = samples.write_samples(tmp_path)
    stamps = [path.stat().st_mtime_ns for path in paths]
    assert samples.write_samples(tmp_path) == paths
    assert [path.stat().st_mtime_ns for path in paths] == stamps


def test_write_samples_does_not_replace_other_content(tmp_path: Path) -> None:
    mine = tmp_path / "shapes_wide.png"
    mine.write_bytes(b"my own picture")
    with pytest.raises(FileExistsError, match="shapes_wide.png.*overwrite"):
        samples.write_samples(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["shapes_wide.png"], "nothing written on error"
    assert mine.read_bytes() == b"my own picture"
    samples.write_samples(tmp_path, overwrite=True)
    assert mine.read_bytes().startswith(b"\x89PNG")


def test_photos_without_scikit_image_raise_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `import skimage` raise ImportError
    with pytest.raises(samples.MissingPhotosDependency, match=r"pip install -e '\.\[examples\]'"):
        samples.write_samples(tmp_path / "photos", photos=True)
    assert not (tmp_path / "photos").exists(), "checked before anything is written"
    assert samples_main([str(tmp_path / "photos"), "--photos"]) == 1
    assert "pip install -e '.[examples]'" in capsys.readouterr().err


def test_photos_are_written_from_scikit_image_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writing path, with a stand-in for skimage.data (scikit-image is only in the examples extra)."""
    data = types.ModuleType("skimage.data")
    gradient = np.linspace(0, 255, 40 * 30 * 3).reshape(40, 30, 3).astype(np.uint8)
    for name in ("astronaut", "chelsea", "coffee"):
        setattr(data, name, lambda: gradient)
    skimage = types.ModuleType("skimage")
    skimage.data = data
    monkeypatch.setitem(sys.modules, "skimage", skimage)
    monkeypatch.setitem(sys.modules, "skimage.data", data)
    paths = samples.write_samples(tmp_path, photos=True)
    assert [path.name for path in paths] == [f"{name}.png" for name in SCENE_NAMES] + PHOTO_NAMES
    for path in paths[len(SCENE_NAMES):]:
        read = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert read.shape == gradient.shape
        assert np.abs(read.astype(int) - gradient).mean() < 3  # JPEG, RGB order kept


def test_real_photos_from_scikit_image(tmp_path: Path) -> None:
    # The test extra installs scikit-image, so the photos path runs here.
    paths = samples.write_samples(tmp_path, photos=True)
    shapes = {path.name: cv2.imread(str(path)).shape for path in paths[len(SCENE_NAMES):]}
    assert shapes == {"astronaut.jpg": (512, 512, 3), "chelsea.jpg": (300, 451, 3), "coffee.jpg": (400, 600, 3)}


def test_readme_uses_the_documented_options() -> None:
    amg_argv = readme_command_1()["sam-amg"]
    options = {flag[2:].replace("-", "_"): float(amg_argv[i + 1])
               for i, flag in enumerate(amg_argv) if flag in {"--pred-iou-thresh", "--stability-score-thresh",
                                                             "--min-mask-region-area"}}
    assert options == samples.SHAPES_MODEL_AMG_OPTIONS
    assert "../shared" not in " ".join(word for argv in readme_command_1().values() for word in argv)


def test_readme_command_writes_outputs(readme_run: tuple[Path, Path, int]) -> None:
    _, out, code = readme_run
    assert code == 0
    for name in SCENE_NAMES:
        assert (out / name / "metadata.csv").exists()
        assert (out / f"{name}_overlay.png").exists()


def test_readme_command_recovers_the_shapes(readme_run: tuple[Path, Path, int]) -> None:
    _, out, _ = readme_run
    recovered = total = unmatched = masks_written = 0
    for scene in samples.shapes_scenes():
        masks = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127
                 for path in sorted((out / scene.name).glob("*.png"))]
        scores = np.array([[iou(truth, mask) for mask in masks] for truth in scene.masks]).reshape(
            len(scene.masks), len(masks))
        found = int((scores.max(axis=1, initial=0) >= MATCH_IOU).sum())
        assert found >= len(scene.masks) / 2, f"{scene.name}: {found} of {len(scene.masks)} shapes"
        recovered += found
        total += len(scene.masks)
        unmatched += int((scores.max(axis=0, initial=0) < MATCH_IOU).sum())
        masks_written += len(masks)
    assert recovered >= MIN_RECOVERED_FRACTION * total, f"{recovered} of {total} shapes"
    assert unmatched <= total / 2, f"{unmatched} of {masks_written} masks match no shape"

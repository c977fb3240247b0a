"""The Ray engines (sam-amg and the embedding-cache precompute of sam-finetune) against the single-process ones, on
one local Ray instance of 2 CPUs shared by the module.

The model is the 2 MB shapes model (tests/make_shapes_model.py) on small synthetic scenes. The Ray engine's
outputs must be byte for byte the single-process engine's; a corrupt file lands in failures.csv; an image with
outputs is not touched; a driver killed with SIGKILL in the middle of the job leaves only complete outputs,
and a rerun finishes the job. The cache the Ray actors fill is the one fine-tuning reads: the same files, so the
trainer encodes nothing.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from make_shapes_model import DEFAULT_OUTPUT as SHAPES_WEIGHTS

import sam_core
from sam_core.cli import amg_main
from sam_core.cli.finetune import main as finetune_main
from sam_core.finetune.cache import EmbeddingCache, encode_images
from sam_core.jobs.amg import read_image
from sam_core.jobs.samples import draw_shapes_image, shapes_training_images

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
pyarrow = pytest.importorskip("pyarrow")  # comes with ray[data]
parquet = pytest.importorskip("pyarrow.parquet")

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ["--checkpoint", str(SHAPES_WEIGHTS), "--points-per-side", "4", "--pred-iou-thresh", "0.55",
           "--stability-score-thresh", "0.8"]
RAY = ["--engine", "ray", "--num-workers", "2", "--cpus-per-worker", "1", "--batch-size", "2"]
AMG = "import sys; from sam_core.cli import amg_main; sys.exit(amg_main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def ray_instance() -> str:
    """A local Ray instance of 2 CPUs and a small object store; its workers import this checkout's sam_core.
    Returns its address, for drivers in other processes."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), saved or ""])
    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    for index in range(6):
        image, _ = draw_shapes_image(np.random.default_rng(index + 40), 96 + 16 * (index % 3), 128, n_shapes=4)
        cv2.imwrite(str(folder / f"scene{index}.{'jpg' if index % 2 else 'png'}"),
                    cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def reference(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process engine's outputs, on one torch thread like each Ray actor."""
    output = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert amg_main(["--input", str(scenes), "--output", str(output), "--overlay", *OPTIONS]) == 0
    finally:
        torch.set_num_threads(threads)
    return output


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_ray_engine_writes_the_single_process_outputs_records_failures_and_skips_finished_images(
        ray_instance: str, scenes: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for image in sorted(scenes.iterdir())[:4]:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    output = tmp_path / "out"
    finished = output / "scene0"  # outputs of an earlier run, recognisable by their content
    finished.mkdir(parents=True)
    (finished / "metadata.csv").write_text("left by an earlier run\n")
    (output / "scene0_overlay.png").write_bytes(b"an earlier overlay")
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in output.rglob("*") if path.is_file()}

    code = amg_main(["--input", str(folder), "--output", str(output), "--overlay", *OPTIONS, *RAY])
    out = capsys.readouterr().out
    assert code == 1
    assert "sam-amg: 5 images: 3 processed (" in out and "1 skipped (outputs exist), 1 failed;" in out
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in before} == before
    with open(output / "failures.csv", newline="") as handle:
        assert list(csv.reader(handle)) == [["path", "reason"],
                                            [str(folder / "broken.png"), "cannot read the file as an image"]]
    expected = {name: data for name, data in files_under(reference).items() if name.split("/")[0] in
                {"scene1", "scene2", "scene3", "scene1_overlay.png", "scene2_overlay.png", "scene3_overlay.png"}}
    got = files_under(output)
    assert len(expected) > 10 and {name: got.get(name) for name in expected} == expected
    assert sorted(got) == sorted([*expected, "failures.csv", *(str(path.relative_to(output)) for path in before)])

    # The same images listed in a Parquet column: all done already, nothing is redone.
    listing = tmp_path / "images.parquet"
    parquet.write_table(pyarrow.table({"image": [str(path) for path in sorted(folder.glob("scene*"))]}), listing)
    code = amg_main(["--input", str(listing), "--input-column", "image", "--output", str(output), "--overlay",
                     *OPTIONS, *RAY])
    assert code == 0 and "sam-amg: 4 images: 0 processed (0 masks), 4 skipped" in capsys.readouterr().out
    assert files_under(output) == {name: data for name, data in got.items() if name != "failures.csv"}


def test_ray_driver_killed_midway_then_rerun_leaves_every_output_complete(
        ray_instance: str, scenes: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out"
    arguments = ["--input", str(scenes), "--output", str(output), "--overlay", *OPTIONS, *RAY]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-c", AMG, *arguments, "--address", ray_instance], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Kill it the moment the actors have written something: mid-job, likely mid-write.
    while driver.poll() is None and not (output.is_dir() and any(output.iterdir())):
        time.sleep(0.001)
    assert driver.poll() is None, driver.stderr.read()
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # Ray ends a dead driver's actors; wait until they have given their CPUs back (no writer is left).
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    expected = files_under(reference)
    visible = {name: data for name, data in files_under(output).items()
               if not any(part.startswith(".") for part in name.split("/"))}
    assert len(visible) < len(expected)  # the job was cut short ...
    assert {name: expected.get(name) for name in visible} == visible  # ... and what it wrote is complete

    assert amg_main(arguments) == 0
    assert "6 images:" in capsys.readouterr().out
    assert files_under(output) == expected
    assert not [path for path in output.rglob(".*")], "temporary files were left behind"


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, scenes: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    code = amg_main(["--input", str(scenes), "--output", str(tmp_path / "out"), *OPTIONS, *RAY])
    assert code == 2 and "pip install -e '.[ray]'" in capsys.readouterr().err


@pytest.fixture
def training_data(tmp_path: Path) -> Path:
    """images/<key>.png and labels/<key>.png (0: background, k: the k-th shape): what sam-finetune reads."""
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "labels").mkdir()
    for image in shapes_training_images(3, seed=31):
        labels = np.zeros(image.size, dtype=np.uint8)
        for index, obj in enumerate(image.load_objects(), start=1):
            labels[obj.mask] = index
        cv2.imwrite(str(tmp_path / "data" / "images" / f"{image.key}.png"),
                    cv2.cvtColor(image.load_image(), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / "data" / "labels" / f"{image.key}.png"), labels)
    return tmp_path / "data"


def test_ray_precompute_writes_the_embedding_cache_that_fine_tuning_reads(
        ray_instance: str, training_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache_dir = tmp_path / "cache"
    arguments = ["--model", str(SHAPES_WEIGHTS), "--data", str(training_data), "--output", str(tmp_path / "run"),
                 "--val-fraction", "0.34", "--cache-dir", str(cache_dir), "--cache-only", "--engine", "ray",
                 "--num-workers", "1", "--batch-size", "1"]  # one image per encoder call, as the reference below
    assert finetune_main(arguments) == 0
    assert "embedding cache: 3 images, 3 encoded now" in capsys.readouterr().err

    model = sam_core.load_sam(SHAPES_WEIGHTS)
    encoded: list[int] = []
    encode = model.encode
    model.encode = lambda images: encoded.append(len(images)) or encode(images)  # type: ignore[method-assign]
    cache = EmbeddingCache(model, cache_dir)
    images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
              for path in sorted((training_data / "images").iterdir())]
    keys = cache.build(images, progress=False)
    assert encoded == []  # the trainer's own build finds every image in the cache
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the actors
    try:
        with torch.no_grad():
            for key, image in zip(keys, images):
                expected = encode_images(model, [image])
                stored = cache.load(key)
                assert stored.original_sizes == expected.original_sizes
                assert stored.input_sizes == expected.input_sizes
                for name, features in expected.features.items():
                    torch.testing.assert_close(stored.features[name], features, rtol=0, atol=0)
    finally:
        torch.set_num_threads(threads)


def test_images_named_by_uri_decode_as_local_files_do(tmp_path: Path) -> None:
    """Lists may name images by URI (read through pyarrow's file systems); a file:// URI gives the pixels that
    cv2.imread gives for the path, EXIF orientation included."""
    from PIL import Image

    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: a viewer turns it 90 degrees
    image, _ = draw_shapes_image(np.random.default_rng(3), 48, 80, n_shapes=3)
    Image.fromarray(image).save(rotated, exif=exif)
    local = cv2.imread(str(rotated), cv2.IMREAD_COLOR)
    assert local.shape == (80, 48, 3)
    np.testing.assert_array_equal(read_image(rotated.as_uri()), local)
    assert read_image((tmp_path / "missing.jpg").as_uri()) is None

"""sam-serve in a real headless Chromium (Debian's ``chromium``, driven by playwright): open the page, load
truck.jpg, click a point and drag a box, and check that the masks drawn on the page's canvas are
``Predictor.predict``'s; pick another multimask output and download it; a bad file shows the error and the
next good file still works. Screenshots and the click-to-mask latencies go to the test's output folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import sam_core
from sam_core.jobs.samples import shapes_scenes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")  # the test extra, which CI installs with chromium
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/run installs it)")

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "weights" / "sam_vit_tiny_shapes.safetensors"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The mask canvas may be scaled for display; what it holds is one pixel per image pixel.
READ_MASK = """() => {
  const canvas = document.getElementById('mask-canvas');
  const alpha = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const runs = []; let value = false, run = 0;
  for (let i = 3; i < alpha.length; i += 4) {
    if ((alpha[i] > 0) !== value) { runs.push(run); run = 0; value = !value; }
    run += 1;
  }
  runs.push(run);
  return {width: canvas.width, height: canvas.height, runs};
}"""


def _mask_from_page(page) -> np.ndarray:
    drawn = page.evaluate(READ_MASK)
    values = np.arange(len(drawn["runs"])) % 2 == 1
    return np.repeat(values, drawn["runs"]).reshape(drawn["height"], drawn["width"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _photo(tmp_path: Path) -> Path:
    """A shapes scene at a photo's size (tests read nothing outside the repository)."""
    scene = Image.fromarray(shapes_scenes()[1].image).resize((1800, 1200))
    path = tmp_path / "truck.jpg"
    scene.save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    Image.fromarray(shapes_scenes()[0].image).save(folder / "scene.png")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from sam_core.cli.serve import main; sys.exit(main(sys.argv[1:]))",
         "--model", str(MODEL), "--images", str(folder), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"sam-serve did not start: {process.stdout.read().decode()}") from None
            time.sleep(0.3)
    yield url, folder
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def page(tmp_path):
    with playwright.sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, accept_downloads=True)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _load(page, path: Path) -> None:
    before = page.evaluate("samApp.image ? samApp.image.id : null")
    page.set_input_files("#file-input", str(path))
    page.wait_for_function(f"() => samApp.image && samApp.image.id !== {json.dumps(before)}", timeout=60_000)


# Predicates are written as functions: Playwright would evaluate a bare expression with eval(), which the
# page's Content-Security-Policy forbids.
def _wait_for_mask(page, version: int) -> None:
    page.wait_for_function(f"() => samApp.maskVersion > {version} && !samApp.busy", timeout=30_000)


def _agreement(drawn: np.ndarray, expected: np.ndarray) -> float:
    assert drawn.shape == expected.shape
    return float((drawn == expected).mean())


def test_click_box_choices_download_and_a_bad_file_in_chromium(server, page, tmp_path):
    url, folder = server
    console = []
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(url)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_function("() => window.samApp && samApp.ready")
    photo = _photo(tmp_path)
    _load(page, photo)
    page.screenshot(path=str(tmp_path / "1_opened.png"))

    with Image.open(photo) as opened:
        rgb = np.array(ImageOps.exif_transpose(opened).convert("RGB"))
    predictor = sam_core.Predictor(sam_core.load_sam(MODEL))
    predictor.set_image(rgb)
    canvas = page.locator("#prompt-canvas")
    box = canvas.bounding_box()

    # Hover: a preview appears before any click.
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
    page.wait_for_function("""() => { const c = document.getElementById('hover-canvas');
        return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 === 3 && v > 0); }""")

    # A click: the drawn mask is the one Predictor.predict gives for the point the page sent.
    version = page.evaluate("samApp.maskVersion")
    canvas.click(position={"x": box["width"] * 0.55, "y": box["height"] * 0.6})
    _wait_for_mask(page, version)
    state = page.evaluate("({points: samApp.points, labels: samApp.labels, selected: samApp.selected})")
    masks, scores, _ = predictor.predict(point_coords=np.array(state["points"]), point_labels=np.array(state["labels"]))
    assert state["selected"] == int(np.argmax(scores))
    assert _agreement(_mask_from_page(page), masks[state["selected"]]) >= 0.999
    page.screenshot(path=str(tmp_path / "2_click.png"))

    # Another multimask output, chosen on the page, then downloaded as PNG.
    other = (state["selected"] + 1) % 3
    version = page.evaluate("samApp.maskVersion")
    page.click(f"#mask-choices button[data-index='{other}']")
    _wait_for_mask(page, version)
    assert _agreement(_mask_from_page(page), masks[other]) >= 0.999
    with page.expect_download() as download:
        page.click("#download-png")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert np.array_equal(np.array(Image.open(saved)) > 0, masks[other])

    # A box drag.
    page.click("#clear")
    version = page.evaluate("samApp.maskVersion")
    start = (box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.3)
    end = (box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.8)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()
    _wait_for_mask(page, version)
    state = page.evaluate("({box: samApp.box, points: samApp.points, selected: samApp.selected})")
    assert state["points"] == []
    masks, _, _ = predictor.predict(box=np.array(state["box"]))
    assert _agreement(_mask_from_page(page), masks[state["selected"]]) >= 0.999
    page.screenshot(path=str(tmp_path / "3_box.png"))

    # A bad file: one clear error on the page; the next good file works.
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 100)
    page.set_input_files("#file-input", str(broken))
    page.wait_for_selector("#error.shown")
    assert page.inner_text("#error").startswith("broken.png: not a readable image")
    page.screenshot(path=str(tmp_path / "4_bad_file.png"))
    _load(page, folder / "scene.png")
    assert page.inner_text("#error") == ""
    scene_predictor = sam_core.Predictor(predictor.model)
    scene_predictor.set_image(shapes_scenes()[0].image)
    version = page.evaluate("samApp.maskVersion")
    canvas.click(position={"x": canvas.bounding_box()["width"] * 0.4, "y": canvas.bounding_box()["height"] * 0.4})
    _wait_for_mask(page, version)
    state = page.evaluate("({points: samApp.points, labels: samApp.labels, selected: samApp.selected})")
    masks, _, _ = scene_predictor.predict(point_coords=np.array(state["points"]),
                                          point_labels=np.array(state["labels"]))
    assert _agreement(_mask_from_page(page), masks[state["selected"]]) >= 0.999
    page.screenshot(path=str(tmp_path / "5_next_file.png"))

    # The page ran under its Content-Security-Policy (no inline script or style) without a violation.
    assert not [text for text in console if "Content Security Policy" in text]
    latencies = page.evaluate("samApp.latencies")  # the click, the box, the click on the second image
    record = {"image": photo.name, "size": list(rgb.shape[:2]), "click_to_mask_ms": [round(v, 1) for v in latencies]}
    (tmp_path / "latency.json").write_text(json.dumps(record))
    print(f"\nclick-to-mask latency in Chromium: {record}")

"""sam-serve's API through FastAPI's TestClient: masks equal the library's, and bad input (oversized, not an
image, damaged, too many pixels, paths outside the folder) gets one clear error while the server goes on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sam_core
from sam_core.jobs.samples import shapes_scenes
from sam_core.models.edge_sam import TINY_EDGE_SAM

pytest.importorskip("fastapi")  # the serve extra, which CI installs
from fastapi.testclient import TestClient  # noqa: E402
from pycocotools import mask as coco_mask  # noqa: E402

from sam_core.serve import ImageFolder, ImageLimits, create_app  # noqa: E402
from sam_core.serve.masks_io import mask_to_runs, runs_to_mask  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = {"points_per_side": 8, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}
EVERY_MASK = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}  # random weights: keep masks


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model():
    return sam_core.load_sam(ROOT / "weights" / "sam_vit_tiny_shapes.safetensors")


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return shapes_scenes()[0].image


@pytest.fixture(scope="module")
def served(tmp_path_factory, model, scene, page_client):
    root = tmp_path_factory.mktemp("served")
    folder = root / "images"
    folder.mkdir()
    (folder / "scene.png").write_bytes(_png(scene))
    (folder / "notes.txt").write_text("not an image")
    (root / "secret.png").write_bytes(_png(scene))
    (folder / "link.png").symlink_to(root / "secret.png")  # a link that leads out of the folder
    app = create_app(model, "shapes", ImageFolder(folder), ImageLimits(max_bytes=2_000_000, max_pixels=300_000),
                     GENERATOR)
    return page_client(app)


def _open(client: TestClient, **params) -> tuple[int, list[dict]]:
    body = params.pop("data", None)
    response = client.post("/api/images", params=params, content=body)
    if response.status_code != 200:
        return response.status_code, [response.json()]
    return 200, [json.loads(line) for line in response.text.splitlines()]


def _assert_predictions_are_the_librarys(client: TestClient, image_id: str, predictor: sam_core.Predictor,
                                         prompts: list[dict], size: tuple[int, int]) -> None:
    """Each prompt's three masks and scores from the app equal ``predictor.predict``'s."""
    for prompt in prompts:
        result = client.post(f"/api/images/{image_id}/predict", json={**prompt, "multimask": True}).json()
        expected, scores, _ = predictor.predict(
            point_coords=np.array(prompt["points"]) if "points" in prompt else None,
            point_labels=np.array(prompt["labels"]) if "labels" in prompt else None,
            box=np.array(prompt["box"]) if "box" in prompt else None)
        assert len(result["masks"]) == 3
        for got, mask, score in zip(result["masks"], expected, scores):
            assert np.array_equal(runs_to_mask(got["runs"], *size), mask)
            assert got["score"] == pytest.approx(float(score))


def test_upload_streams_progress_then_the_image_and_predicts_the_librarys_mask(served, model, scene):
    status, events = _open(served, name="scene.png", data=_png(scene))
    assert status == 200
    progress = [event["progress"] for event in events if "progress" in event]
    assert progress == sorted(progress) and progress[-1] == 1.0
    image = events[-1]["image"]
    assert (image["width"], image["height"]) == (scene.shape[1], scene.shape[0])
    predictor = sam_core.Predictor(model)
    predictor.set_image(scene)
    prompts = [dict(points=[[60.5, 70.25]], labels=[1]), dict(box=[20, 30, 150, 160]),
               dict(points=[[60, 70], [100, 100]], labels=[1, 0], box=[20, 30, 150, 160])]
    _assert_predictions_are_the_librarys(served, image["id"], predictor, prompts, scene.shape[:2])
    pixels = np.array(Image.open(io.BytesIO(served.get(f"/api/images/{image['id']}/pixels").content)))
    assert np.array_equal(pixels, scene)


def test_folder_image_and_segment_everything(served, model, scene):
    assert served.get("/api/info").json()["folder_images"] == ["scene.png"]
    status, events = _open(served, folder_name="scene.png")
    assert status == 200
    image_id = events[-1]["image"]["id"]
    result = served.post(f"/api/images/{image_id}/everything").json()
    records = sam_core.AutomaticMaskGenerator(model, **GENERATOR).generate(scene)
    records.sort(key=lambda record: -record["area"])
    assert len(result["masks"]) == len(records) > 0
    for got, record in zip(result["masks"], records):
        assert np.array_equal(runs_to_mask(got["runs"], *scene.shape[:2]), record["segmentation"])


def test_downloads_png_and_coco_rle(served, scene):
    image_id = _open(served, name="scene.png", data=_png(scene))[1][-1]["image"]["id"]
    rng = np.random.default_rng(0)
    masks = [rng.random(scene.shape[:2]) < 0.3 for _ in range(2)]
    body = {"masks": [{"runs": mask_to_runs(mask), "score": 0.5 + i} for i, mask in enumerate(masks)]}
    one = served.post(f"/api/images/{image_id}/download", params={"format": "png"}, json={"masks": body["masks"][:1]})
    assert one.headers["content-disposition"] == 'attachment; filename="scene_masks.png"'
    assert np.array_equal(np.array(Image.open(io.BytesIO(one.content))), masks[0].astype(np.uint8) * 255)
    labels = np.array(Image.open(io.BytesIO(served.post(f"/api/images/{image_id}/download", params={"format": "png"},
                                                         json=body).content)))
    assert np.array_equal(labels == 2, masks[1]) and np.array_equal(labels == 1, masks[0] & ~masks[1])
    records = served.post(f"/api/images/{image_id}/download", params={"format": "coco"}, json=body).json()
    odd_id = _open(served, name='a "quoted"\r\nname.png', data=_png(scene))[1][-1]["image"]["id"]
    odd = served.post(f"/api/images/{odd_id}/download", params={"format": "coco"}, json=body)
    assert odd.headers["content-disposition"] == 'attachment; filename="a__quoted___name_masks.json"'
    for record, mask, entry in zip(records, masks, body["masks"]):
        assert np.array_equal(coco_mask.decode(record["segmentation"]).astype(bool), mask)
        assert record["area"] == mask.sum() and record["predicted_iou"] == entry["score"]


@pytest.mark.parametrize("data, status, message", [
    (b"", 400, "the file is empty"),
    (b"hello, this is text", 400, "not a readable image"),
    (None, 400, "not a readable image"),  # a PNG cut in half
    (b"x" * 2_000_001, 413, "over the limit of 2000000 bytes"),
    ("big", 413, "over the limit of 300000 pixels"),
    ("gif", 400, "GIF images are not accepted"),
])
def test_bad_uploads_get_one_clear_error_and_the_server_goes_on(served, scene, data, status, message):
    if data is None:
        whole = _png(scene)
        data = whole[: len(whole) // 2]
    elif data == "big":  # small file, many pixels: refused from the header, before decoding
        data = _png(np.zeros((1000, 1000, 3), np.uint8))
    elif data == "gif":
        buffer = io.BytesIO()
        Image.fromarray(scene).save(buffer, format="GIF")
        data = buffer.getvalue()
    got_status, events = _open(served, name="bad.png", data=data)
    assert got_status == status and message in events[0]["error"] and events[0]["error"].startswith("bad.png")
    assert _open(served, name="good.png", data=_png(scene))[0] == 200


@pytest.mark.parametrize("name", ["../secret.png", "/etc/passwd", "link.png", "notes.txt", "..%2Fsecret.png",
                                  "images/scene.png", "missing.png"])
def test_nothing_outside_the_folder_is_served(served, name):
    status, events = _open(served, folder_name=name)
    assert status == 404 and "is not an image of the served folder" in events[0]["error"]


def test_bad_prompts_and_unknown_images_are_errors(served, scene):
    image_id = _open(served, name="scene.png", data=_png(scene))[1][-1]["image"]["id"]
    response = served.post(f"/api/images/{image_id}/predict", json={"points": [[1, 2, 3]], "labels": [1]})
    assert response.status_code == 400 and "point_coords" in response.json()["error"]
    response = served.post(f"/api/images/{image_id}/predict", content=b"{not json")
    assert response.status_code == 400 and response.json()["error"] == "the request body is not JSON"
    response = served.post("/api/images/0123/predict", json={"points": [[1, 2]], "labels": [1]})
    assert response.status_code == 404 and "open it again" in response.json()["error"]
    assert served.post(f"/api/images/{image_id}/download", params={"format": "tiff"},
                       json={"masks": [{"runs": [scene.shape[0] * scene.shape[1]]}]}).status_code == 400


def sam2_shapes_model() -> sam_core.PromptableSegmenter:
    return sam_core.load_sam(ROOT / "weights" / "sam2_hiera_test_shapes.safetensors")


def edge_sam_model() -> sam_core.PromptableSegmenter:
    return sam_core.build_sam(TINY_EDGE_SAM)  # random weights: EVERY_MASK keeps masks; stability-scored records


@pytest.mark.parametrize(("make_model", "options"), [(sam2_shapes_model, GENERATOR), (edge_sam_model, EVERY_MASK)],
                         ids=["sam2", "edge_sam"])
def test_another_family_is_served_with_the_librarys_masks(scene, make_model, options, page_client):
    """SAM 2 and EdgeSAM through the same app: progress, a click and a box equal Predictor.predict's masks, and
    segment everything equals AutomaticMaskGenerator's records."""
    model = make_model()
    client = page_client(create_app(model, "model", None, ImageLimits(max_bytes=2_000_000, max_pixels=300_000),
                                   options))
    status, events = _open(client, name="scene.png", data=_png(scene))
    assert status == 200 and [event["progress"] for event in events if "progress" in event][-1] == 1.0
    image_id = events[-1]["image"]["id"]
    predictor = sam_core.Predictor(model)
    predictor.set_image(scene)
    prompts = [dict(points=[[60.5, 70.25]], labels=[1]), dict(box=[20, 30, 150, 160])]
    _assert_predictions_are_the_librarys(client, image_id, predictor, prompts, scene.shape[:2])
    result = client.post(f"/api/images/{image_id}/everything").json()
    records = sorted(sam_core.AutomaticMaskGenerator(model, **options).generate(scene), key=lambda r: -r["area"])
    assert len(result["masks"]) == len(records) > 0
    for got, record in zip(result["masks"], records):
        assert np.array_equal(runs_to_mask(got["runs"], *scene.shape[:2]), record["segmentation"])

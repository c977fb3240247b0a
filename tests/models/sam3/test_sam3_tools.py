"""SAM 3 through sam_core's tools on the tiny ``sam3_test`` config (random weights, filters off so that masks
survive): AutomaticMaskGenerator and ``sam-amg --checkpoint``, ``sam-serve``'s app, and the Meta compat
predictor, each equal to the library's own result on the same model."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from skimage.data import astronaut

import sam_core
from sam_core.cli.amg import main as amg_main
from sam_core.compat.meta import SAM3InteractiveImagePredictor
from sam_core.io.checkpoints import save_sam
from sam_core.models.sam3 import Sam3

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models; the machine's cores may be busy

OPTIONS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def model():
    return sam_core.build_sam("sam3_test")


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(astronaut()[::4, ::3])  # 128 x 171


def test_sam_amg_writes_the_generators_records(model, image, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "astronaut.png")
    checkpoint = save_sam(model, tmp_path / "sam3_test.safetensors")
    flags = [item for name, value in OPTIONS.items() for item in ("--" + name.replace("_", "-"), str(value))]
    code = amg_main([str(arg) for arg in ("--input", tmp_path / "in", "--output", tmp_path / "out", "--checkpoint",
                                          checkpoint, "--output-format", "coco", *flags)])
    assert code == 0 and "1 processed" in capsys.readouterr().out
    records = sam_core.AutomaticMaskGenerator(model, **OPTIONS).generate(image)
    written = json.loads((tmp_path / "out" / "astronaut.json").read_text())
    assert len(written) == len(records) > 0
    for entry, record in zip(written, records):
        np.testing.assert_array_equal(mask_utils.decode(entry["segmentation"]).astype(bool), record["segmentation"])


def test_sam_serve_predicts_the_predictors_masks(model, image):
    pytest.importorskip("fastapi")  # the serve extra, which CI installs
    from fastapi.testclient import TestClient

    from sam_core.serve import ImageLimits, create_app
    from sam_core.serve.security import TOKEN_HEADER, Access

    client = TestClient(create_app(model, "sam3_test", None, ImageLimits(max_bytes=2_000_000, max_pixels=300_000),
                                   OPTIONS, access=Access(token="t0k")),
                        base_url="http://127.0.0.1:8000", headers={TOKEN_HEADER: "t0k"})
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    response = client.post("/api/images", params={"name": "astronaut.png"}, content=buffer.getvalue())
    assert response.status_code == 200
    image_id = json.loads(response.text.splitlines()[-1])["image"]["id"]
    result = client.post(f"/api/images/{image_id}/predict",
                         json={"points": [[60.5, 50.25]], "labels": [1], "multimask": True}).json()
    predictor = sam_core.Predictor(model)
    predictor.set_image(image)
    _, scores, _ = predictor.predict(point_coords=np.array([[60.5, 50.25]]), point_labels=np.array([1]))
    assert [mask["score"] for mask in result["masks"]] == pytest.approx(scores.tolist(), abs=1e-5)


def test_meta_compat_predictor(model, image):
    assert isinstance(model, Sam3)
    compat = SAM3InteractiveImagePredictor(model)
    compat.set_image(image)
    masks, scores, low_res = compat.predict(point_coords=np.array([[60.0, 50.0]]), point_labels=np.array([1]))
    predictor = sam_core.Predictor(model, max_hole_area=256)
    predictor.set_image(image)
    expected, expected_scores, _ = predictor.predict(point_coords=np.array([[60.0, 50.0]]), point_labels=np.array([1]))
    assert masks.shape == (3, *image.shape[:2]) and low_res.shape == (3, 64, 64)
    np.testing.assert_array_equal(masks.astype(bool), expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)

"""EdgeTAM through every image tool: the registry (names, files, round trips), Predictor, AutomaticMaskGenerator,
``sam-amg --model edgetam`` and sam-serve, each equal to the library's own result on the same model."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import sam_core
from sam_core.cli import amg_main
from sam_core.models.edgetam import EDGETAM_CONFIGS, EdgeTam
from sam_core.registry import family_of_checkpoint, model_type_name

TEST = EDGETAM_CONFIGS["edgetam_test"]
EVERY_MASK = {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}  # random weights


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    ours, theirs = a.state_dict(), b.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_registry_names_files_and_round_trips(tmp_path, monkeypatch):
    """Registry names, the released model's shapes, its official file read from the cache (placed by hand: its
    hash is not known), sam_core's safetensors round trip; SAM 2's files stay SAM 2's."""
    assert {"edgetam", "edgetam_test"} <= set(sam_core.model_names())
    full = sam_core.build_sam("edgetam")
    assert isinstance(full, EdgeTam) and full.family == "edgetam" and model_type_name(full.config) == "edgetam"
    # RepViT-M1 as timm builds it: 48..384 channels, stage outputs at strides 4..32.
    outputs = full.image_encoder.trunk(torch.zeros(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outputs] == [(48, 16, 16), (96, 8, 8), (192, 4, 4), (384, 2, 2)]
    monkeypatch.setenv("SAM_CORE_CACHE", str(tmp_path))
    torch.save({"model": full.state_dict()}, tmp_path / "edgetam.pt")
    assert same_weights(full, sam_core.load_sam("edgetam"))
    model = sam_core.build_sam("edgetam_test")
    sam_core.save_sam(model, tmp_path / "tiny.safetensors")
    assert same_weights(model, sam_core.load_sam(tmp_path / "tiny.safetensors"))
    assert family_of_checkpoint(["image_encoder.trunk.blocks.0.attn.qkv.weight"], "sam2 file").name == "sam2"
    assert family_of_checkpoint(["image_encoder.trunk.body.stem.conv1.c.weight"], "meta file").name == "edgetam"


def test_predictor_and_generator_on_edgetam(photo):
    """A click gives three masks whose logits are the model's own decoding of that click; the mask generator
    returns records whose masks are its predictions thresholded."""
    model = sam_core.build_sam("edgetam_test")
    predictor = sam_core.Predictor(model)
    predictor.set_image(photo)
    masks, scores, logits = predictor.predict(point_coords=np.array([[100, 90]]), point_labels=np.array([1]))
    assert masks.shape == (3, *photo.shape[:2]) and scores.shape == (3,) and logits.shape == (3, 64, 64)
    scale = torch.tensor([TEST.image_size / photo.shape[1], TEST.image_size / photo.shape[0]])
    with torch.no_grad():
        embed, high_res = model.encode_image(model.preprocess(torch.from_numpy(photo).permute(2, 0, 1)[None]))
        direct, iou, _ = model.predict_masks(embed, high_res, torch.tensor([[[100.0, 90.0]]]) * scale,
                                             torch.tensor([[1]]))
    np.testing.assert_allclose(logits, direct[0].clamp(-32, 32).numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, iou[0].numpy(), atol=1e-5)
    records = sam_core.AutomaticMaskGenerator(model, **EVERY_MASK).generate(photo)
    assert records and all(r["segmentation"].shape == photo.shape[:2] for r in records)


def test_sam_amg_model_edgetam(photo, tmp_path, capsys):
    """``sam-amg --model FILE`` on an EdgeTAM file writes AutomaticMaskGenerator's records."""
    model = sam_core.build_sam("edgetam_test")
    torch.save({"model": model.state_dict()}, tmp_path / "edgetam.pt")
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "photo.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    flags = [item for name, value in EVERY_MASK.items() for item in ("--" + name.replace("_", "-"), str(value))]
    code = amg_main(["--input", str(tmp_path / "images"), "--output", str(tmp_path / "out"),
                     "--model", str(tmp_path / "edgetam.pt"), "--output-format", "coco", *flags])
    assert code == 0 and "1 processed" in capsys.readouterr().out
    records = sam_core.AutomaticMaskGenerator(model, **EVERY_MASK).generate(photo)
    written = json.loads((tmp_path / "out" / "photo.json").read_text())
    assert len(written) == len(records) > 0
    for entry, record in zip(written, records):
        assert np.array_equal(mask_utils.decode(entry["segmentation"]).astype(bool), record["segmentation"])


def test_sam_serve_answers_with_the_librarys_masks(photo):
    pytest.importorskip("fastapi")  # the serve extra, which CI installs
    from fastapi.testclient import TestClient
    from PIL import Image

    from sam_core.serve import ImageLimits, create_app
    from sam_core.serve.masks_io import runs_to_mask
    from sam_core.serve.security import TOKEN_HEADER, Access

    model = sam_core.build_sam("edgetam_test")
    client = TestClient(create_app(model, "edgetam_test", None, ImageLimits(max_bytes=2_000_000, max_pixels=300_000),
                                   EVERY_MASK, access=Access(token="t0k")),
                        base_url="http://127.0.0.1:8000", headers={TOKEN_HEADER: "t0k"})
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    response = client.post("/api/images", params={"name": "photo.png"}, content=buffer.getvalue())
    assert response.status_code == 200
    image_id = json.loads(response.text.splitlines()[-1])["image"]["id"]
    result = client.post(f"/api/images/{image_id}/predict", json={"points": [[100, 90]], "labels": [1],
                                                                   "multimask": True}).json()
    predictor = sam_core.Predictor(model)
    predictor.set_image(photo)
    expected, scores, _ = predictor.predict(point_coords=np.array([[100, 90]]), point_labels=np.array([1]))
    assert len(result["masks"]) == 3
    for got, mask, score in zip(result["masks"], expected, scores):
        assert np.array_equal(runs_to_mask(got["runs"], *photo.shape[:2]), mask)
        assert got["score"] == pytest.approx(float(score))

"""ONNX export of SAM 2: onnxruntime on the exported decoder and encoder graphs against the PyTorch model
(``Predictor.predict`` with torch upscaling, the decoder's own outputs, ``Predictor.features_by_name``) on the
``sam2_hiera_test`` shapes with every tensor random, for points, a box, a box with a point, each with and
without a mask input, on a tall and a wide image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sam_core
from sam_core.cli import export_onnx_main
from sam_core.io.onnx_export import SAM2_DECODER_INPUTS, SAM2_DECODER_OUTPUTS, decoder_inputs, export_onnx
from sam_core.models.sam2.parity import randomize_

ort = pytest.importorskip("onnxruntime")  # the onnx extra, which CI installs
from test_onnx_export import PROMPTS, SIZES, TOLERANCE, _session  # noqa: E402  (the same prompts and sizes)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    return one_torch_thread


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = sam_core.build_sam("sam2_hiera_test")
    randomize_(model)
    folder = tmp_path_factory.mktemp("sam2_onnx")
    files = export_onnx(model, folder / "decoder.onnx", encoder=folder / "encoder.onnx")
    return model.eval(), files


def _image(size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(size[0]).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_graph_interface(exported):
    session = _session(exported[1].decoder)
    assert tuple(i.name for i in session.get_inputs()) == SAM2_DECODER_INPUTS
    assert tuple(o.name for o in session.get_outputs()) == SAM2_DECODER_OUTPUTS
    assert [i.shape for i in session.get_inputs()][3:5] == [[1, "num_points", 2], [1, "num_points"]]


@pytest.mark.parametrize("size", SIZES)
def test_decoder_matches_predictor_and_decoder(exported, size):
    model, files = exported
    session = _session(files.decoder)
    predictor = sam_core.Predictor(model, mask_upscaling="torch")
    predictor.set_image(_image(size))
    features = predictor.features_by_name
    for name, prompt in PROMPTS.items():
        _, _, low_res = predictor.predict(**prompt, multimask_output=False)
        for with_mask in (False, True):
            prompt_here = dict(prompt, mask_input=low_res) if with_mask else prompt
            where = f"{name}, mask input {with_mask}, size {size}"
            masks, iou, low, objects = session.run(None, decoder_inputs(model, features, size, **prompt_here))
            assert masks.shape == (1, 4, *size) and low.shape == (1, 4, 64, 64), where
            # Outputs 1-3 are what Predictor.predict returns with multimask output.
            expected = predictor.predict(**prompt_here, multimask_output=True, return_logits=True)
            np.testing.assert_allclose(masks[0, 1:], expected[0], rtol=0, atol=TOLERANCE, err_msg=where)
            np.testing.assert_allclose(iou[0, 1:], expected[1], rtol=0, atol=TOLERANCE, err_msg=where)
            np.testing.assert_allclose(low[0, 1:], expected[2], rtol=0, atol=TOLERANCE, err_msg=where)
            # The object score, against the model's own prediction for the same prompts.
            transform = model.transform
            coords = prompt_here.get("point_coords")
            coords = None if coords is None else torch.as_tensor(transform.apply_coords(coords, size))[None]
            with torch.no_grad():
                _, _, object_scores = model.predict_masks(
                    features["image_embed"], [features["high_res_feats_0"], features["high_res_feats_1"]],
                    point_coords=coords,
                    point_labels=None if coords is None else torch.as_tensor(prompt_here["point_labels"])[None],
                    boxes=None if "box" not in prompt else torch.as_tensor(
                        transform.apply_coords(prompt["box"].reshape(2, 2), size)).reshape(1, 4),
                    mask_input=None if not with_mask else torch.as_tensor(low_res[None]))
            np.testing.assert_allclose(objects, object_scores, rtol=0, atol=TOLERANCE, err_msg=where)


def test_single_mask_output_is_the_first_token(exported):
    """Output 0 is the single-mask token, which SAM 2 returns for one mask when it is stable."""
    model, files = exported
    size = SIZES[0]
    predictor = sam_core.Predictor(model, mask_upscaling="torch")
    predictor.set_image(_image(size))
    inputs = decoder_inputs(model, predictor.features_by_name, size, **PROMPTS["points"])
    _, iou, low, _ = _session(files.decoder).run(None, inputs)
    decoder = model.sam_mask_decoder
    decoder.dynamic_multimask_via_stability = False  # the plain single-mask output, token 0
    try:
        _, scores, expected_low = predictor.predict(**PROMPTS["points"], multimask_output=False, return_logits=True)
    finally:
        decoder.dynamic_multimask_via_stability = True
    np.testing.assert_allclose(low[0, :1], expected_low, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(iou[0, :1], scores, rtol=0, atol=TOLERANCE)


def test_encoder_graph_matches_the_model(exported):
    model, files = exported
    image = _image(SIZES[1])
    predictor = sam_core.Predictor(model)
    predictor.set_image(image)
    side = model.image_size
    pixels = torch.as_tensor(image).permute(2, 0, 1)[None].float()
    stretched = torch.nn.functional.interpolate(pixels, (side, side), mode="bilinear", align_corners=False,
                                                antialias=True)
    outputs = _session(files.encoder).run(None, {"image": stretched.numpy()})
    assert [o.name for o in _session(files.encoder).get_outputs()] == ["image_embeddings", "high_res_feats_0",
                                                                        "high_res_feats_1"]
    for got, (name, expected) in zip(outputs, predictor.features_by_name.items()):
        np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=TOLERANCE, err_msg=name)


def test_hiera_plain_window_partition_equals_the_fast_one():
    """The plain window partition (traced into the encoder graph) against the fast one, on a grid that
    windows do not divide (padding) and with query pooling."""
    torch.manual_seed(1)
    model = sam_core.build_sam("sam2_hiera_test")
    randomize_(model)
    windows = [block.attn.window_size for block in model.image_encoder.trunk.blocks]
    assert 6 in windows  # a 16 x 16 grid in windows of 6: padded
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        fast = model.image_encoder.trunk(x)
        with sam_core.fast_paths(False):
            plain = model.image_encoder.trunk(x)
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_cli_exports_sam2(tmp_path, capsys):
    model = sam_core.build_sam("sam2_hiera_test")
    weights = sam_core.save_sam(model, tmp_path / "sam2.safetensors")
    output = tmp_path / "sam2_decoder.onnx"
    assert export_onnx_main(["--model", str(weights), "--output", str(output), "--quantize"]) == 0
    assert f"wrote {output}" in capsys.readouterr().out and (tmp_path / "sam2_decoder.int8.onnx").exists()
    loaded = sam_core.load_sam(weights)
    features = {name: np.zeros((1, *shape), np.float32) for name, shape in loaded.feature_shapes.items()}
    masks = _session(output).run(None, decoder_inputs(loaded, features, (64, 80), **PROMPTS["box"]))[0]
    assert masks.shape == (1, 4, 64, 80)

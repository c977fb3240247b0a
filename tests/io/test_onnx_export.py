"""ONNX export: onnxruntime on the exported graphs against the PyTorch model (Predictor.predict, torch
upscaling) and against Meta's own ONNX wrapper (segment_anything.utils.onnx.SamOnnxModel) on the same
random weights, for points, a box, a box with points and a mask input, on vit_tiny and vit_b shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sam_core
from sam_core.cli import export_onnx_main
from sam_core.io.onnx_export import DECODER_INPUTS, DECODER_OUTPUTS, decoder_inputs, export_onnx
from sam_core.models.edge_sam import TINY_EDGE_SAM

ort = pytest.importorskip("onnxruntime")  # the onnx extra, which CI installs

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4
PROMPTS = {
    "points": dict(point_coords=np.array([[61.0, 92.5], [150.0, 40.0]]), point_labels=np.array([1, 0])),
    "box": dict(box=np.array([30.0, 20.0, 170.0, 210.0])),
    "box_and_point": dict(point_coords=np.array([[100.0, 120.0]]), point_labels=np.array([1]),
                          box=np.array([30.0, 20.0, 170.0, 210.0])),
}
SIZES = [(300, 200), (180, 411)]  # tall and wide: the graph crops and resizes from orig_im_size's values


def _randomise_(model: torch.nn.Module, seed: int) -> None:
    """The prompt encoder's and decoder's zero- and one-initialised tensors (biases, norms) moved off their
    initial values; weight matrices and embeddings are random from their initialisation already."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.prompt_encoder.parameters()) + list(model.mask_decoder.parameters()):
            if tensor.dim() < 2:
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))


def _session(path: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # small graphs; threads only wait for each other on busy shared cores
    return ort.InferenceSession(str(path), options)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    return one_torch_thread


@pytest.fixture(scope="module")
def tiny(tiny_pth: Path, tmp_path_factory: pytest.TempPathFactory):
    sam = sam_core.load_sam(tiny_pth)
    folder = tmp_path_factory.mktemp("onnx")
    files = export_onnx(sam, folder / "decoder.onnx", encoder=folder / "encoder.onnx", quantize=True)
    return sam, files


@pytest.fixture(scope="module")
def vit_b(tmp_path_factory: pytest.TempPathFactory):
    sam = sam_core.build_sam("vit_b")
    _randomise_(sam, seed=1)
    files = export_onnx(sam, tmp_path_factory.mktemp("onnx_b") / "decoder.onnx")
    return sam, files


def _compare_with_predictor(sam, decoder_path: Path, size: tuple[int, int], seed: int) -> None:
    session = _session(decoder_path)
    predictor = sam_core.Predictor(sam, mask_upscaling="torch")
    embedding = torch.randn((1, *sam.feature_shapes["image_embeddings"]), generator=torch.Generator().manual_seed(seed))
    predictor.set_image_embedding(embedding, size)
    for name, prompt in PROMPTS.items():
        _, _, low_res = predictor.predict(**prompt, multimask_output=False)
        for with_mask in (False, True):
            prompt_here = dict(prompt, mask_input=low_res) if with_mask else prompt
            masks, iou, low = session.run(None, decoder_inputs(sam, embedding, size, **prompt_here))
            assert masks.shape == (1, 4, *size)
            single = predictor.predict(**prompt_here, multimask_output=False, return_logits=True)
            multi = predictor.predict(**prompt_here, multimask_output=True, return_logits=True)
            for outputs, expected in ((slice(0, 1), single), (slice(1, None), multi)):
                where = f"{name}, mask input {with_mask}, size {size}, outputs {outputs}"
                np.testing.assert_allclose(masks[0, outputs], expected[0], rtol=0, atol=TOLERANCE, err_msg=where)
                np.testing.assert_allclose(iou[0, outputs], expected[1], rtol=0, atol=TOLERANCE, err_msg=where)
                np.testing.assert_allclose(low[0, outputs], expected[2], rtol=0, atol=TOLERANCE, err_msg=where)


@pytest.mark.parametrize("size", SIZES)
def test_tiny_decoder_matches_predictor(tiny, size):
    sam, files = tiny
    _compare_with_predictor(sam, files.decoder, size, seed=3)


def test_vit_b_decoder_matches_predictor(vit_b):
    sam, files = vit_b
    _compare_with_predictor(sam, files.decoder, SIZES[0], seed=4)


def test_graph_interface_is_metas(tiny):
    session = _session(tiny[1].decoder)
    assert tuple(i.name for i in session.get_inputs()) == DECODER_INPUTS
    assert tuple(o.name for o in session.get_outputs()) == DECODER_OUTPUTS
    coords = next(i for i in session.get_inputs() if i.name == "point_coords")
    assert isinstance(coords.shape[1], str)  # num_points is dynamic


def test_decoder_matches_metas_onnx_wrapper(tiny, tiny_reference):
    """Meta's SamOnnxModel (run in PyTorch on the same weights) is the reference for the graph's conventions:
    label ids, padding point, box corners, mask input flag, upscaling from orig_im_size."""
    from segment_anything.utils.onnx import SamOnnxModel

    sam, files = tiny
    session = _session(files.decoder)
    meta = SamOnnxModel(tiny_reference, return_single_mask=False)
    embedding = torch.randn((1, *sam.feature_shapes["image_embeddings"]), generator=torch.Generator().manual_seed(5))
    mask_input = torch.randn((1, 1, 64, 64), generator=torch.Generator().manual_seed(6)).numpy()
    for size in SIZES:
        for prompt in PROMPTS.values():
            feed = decoder_inputs(sam, embedding, size, **prompt, mask_input=mask_input)
            for has_mask in (0.0, 1.0):
                feed["has_mask_input"] = np.float32([has_mask])
                ours = session.run(None, feed)
                with torch.no_grad():
                    theirs = meta(*(torch.from_numpy(feed[name]) for name in DECODER_INPUTS))
                for mine, reference in zip(ours, theirs):
                    np.testing.assert_allclose(mine, reference.numpy(), rtol=0, atol=TOLERANCE)


def test_encoder_graph_matches_model(tiny):
    sam, files = tiny
    session = _session(files.encoder)
    predictor = sam_core.Predictor(sam)
    rng = np.random.default_rng(0)
    for size in SIZES:
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        predictor.set_image(image)
        resized = sam.transform.apply_image(image).transpose(2, 0, 1)[None].astype(np.float32)
        (embedding,) = session.run(None, {"image": resized})
        np.testing.assert_allclose(embedding, predictor.get_image_embedding().numpy(), rtol=0, atol=TOLERANCE)


def test_quantized_decoder_has_the_same_interface(tiny):
    sam, files = tiny
    assert files.quantized_decoder.stat().st_size < files.decoder.stat().st_size
    session = _session(files.quantized_decoder)
    embedding = np.random.default_rng(1).standard_normal((1, *sam.feature_shapes["image_embeddings"]), np.float32)
    masks, iou, low = session.run(None, decoder_inputs(sam, embedding, SIZES[0], **PROMPTS["points"]))
    assert masks.shape == (1, 4, *SIZES[0]) and iou.shape == (1, 4) and low.shape == (1, 4, 64, 64)
    assert np.isfinite(masks).all()


def test_cli_writes_graphs_that_run(tmp_path, capsys):
    output = tmp_path / "shapes.onnx"
    model = ROOT / "weights" / "sam_vit_tiny_shapes.safetensors"
    assert export_onnx_main(["--model", str(model), "--output", str(output), "--quantize"]) == 0
    assert f"wrote {output}" in capsys.readouterr().out and (tmp_path / "shapes.int8.onnx").exists()
    sam = sam_core.load_sam(model)
    embedding = np.zeros((1, *sam.feature_shapes["image_embeddings"]), np.float32)
    masks = _session(output).run(None, decoder_inputs(sam, embedding, (64, 80), **PROMPTS["box"]))[0]
    assert masks.shape == (1, 4, 64, 80)


def test_mobile_sam_decoder_matches_predictor(tmp_path):
    sam = sam_core.build_sam("vit_t")
    _randomise_(sam, seed=5)
    _compare_with_predictor(sam, export_onnx(sam, tmp_path / "decoder.onnx").decoder, SIZES[1], seed=6)


def test_edge_sam_decoder_matches_predictor(tmp_path):
    sam = sam_core.build_sam(TINY_EDGE_SAM)
    _randomise_(sam, seed=7)
    _compare_with_predictor(sam, export_onnx(sam, tmp_path / "decoder.onnx").decoder, SIZES[0], seed=8)


def test_cli_refuses_sam_hq_and_unsupported_encoders_with_one_clear_error(tmp_path, capsys):
    hq = sam_core.save_sam(sam_core.build_sam("sam_hq_vit_tiny"), tmp_path / "hq.safetensors")
    assert export_onnx_main(["--model", str(hq), "--output", str(tmp_path / "x.onnx")]) == 1
    assert "sam-export-onnx: error: ONNX export supports SAM (vit_*), MobileSAM, EdgeSAM" in capsys.readouterr().err
    mobile = sam_core.save_sam(sam_core.build_sam("vit_t"), tmp_path / "mobile.safetensors")
    assert export_onnx_main(["--model", str(mobile), "--output", str(tmp_path / "m.onnx"), "--encoder",
                             str(tmp_path / "e.onnx")]) == 1
    assert "the encoder graph is exported for sam, sam2 models" in capsys.readouterr().err
    assert (tmp_path / "m.onnx").exists() and not (tmp_path / "e.onnx").exists()

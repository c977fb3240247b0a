"""Numerical parity of sam_core's modules with Meta's reference on identical random weights.

The reference (`segment_anything==1.0`) writes its state dict as a `.pth`; sam_core loads that file with
`load_sam`. Tolerance: max abs difference <= 1e-4 on the tiny config, <= 1e-3 on full vit_b at 1024x1024 (fp32).
Each parity test runs on both the fast and the plain code paths (``sam_core.fast_paths``).
"""

from __future__ import annotations

import pytest
import torch

import sam_core
from sam_core.models.sam.parity import make_reference_sam, save_reference_pth

TINY_TOL = 1e-4


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(params=[True, False], ids=["fast", "plain"])
def code_path(request):
    """Runs the test with sam_core's fast paths on, then off."""
    with sam_core.fast_paths(request.param):
        yield request.param


@pytest.fixture(scope="module")
def tiny_pair(tiny_reference, tiny_pth):
    return tiny_reference, sam_core.load_sam(tiny_pth)


def random_image(size: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 255


def prompt_cases(image_size: int, mask_size: int) -> dict[str, dict]:
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(3, 4, 2, generator=generator) * image_size
    boxes = torch.sort(torch.rand(3, 2, 2, generator=generator) * image_size, dim=1).values.reshape(3, 4)
    masks = torch.randn(3, 1, mask_size, mask_size, generator=generator)
    positive = torch.ones(3, 4, dtype=torch.int64)
    with_negative = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 0], [0, 1, 1, 1]])
    return {
        "points": dict(points=(points[:, :1], positive[:, :1]), boxes=None, masks=None),
        "negative_points": dict(points=(points, with_negative), boxes=None, masks=None),
        "padded_points": dict(points=(points, torch.tensor([[1, 0, -1, -1]] * 3)), boxes=None, masks=None),
        "box": dict(points=None, boxes=boxes, masks=None),
        "box_and_points": dict(points=(points[:, :2], with_negative[:, :2]), boxes=boxes, masks=None),
        "mask_input": dict(points=(points[:, :1], positive[:, :1]), boxes=None, masks=masks),
        "mask_only": dict(points=None, boxes=None, masks=masks),
        "no_prompt": dict(points=None, boxes=None, masks=None),
    }


@torch.no_grad()
def test_image_embeddings_match(tiny_pair, code_path):
    reference, ours = tiny_pair
    images = random_image(256, batch=2)
    expected = reference.image_encoder(reference.preprocess(images))
    actual = ours.image_encoder(ours.preprocess(images))
    assert actual.shape == expected.shape == (2, 64, 16, 16)
    assert max_diff(actual, expected) <= TINY_TOL


@torch.no_grad()
def test_window_padding_path_matches(code_path):
    # 20x20 grid with window 6 pads to 24: exercises partition padding and a non-default grid.
    config = sam_core.SamConfig(image_size=320, encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=4,
                                encoder_global_attn_indexes=(1,), window_size=6, prompt_embed_dim=32,
                                decoder_mlp_dim=64, iou_head_hidden_dim=32)
    reference = make_reference_sam(config, seed=3)
    ours = sam_core.build_sam(config)
    ours.load_state_dict(reference.state_dict())
    images = random_image(320)
    assert max_diff(ours.image_encoder(images), reference.image_encoder(images)) <= TINY_TOL


@pytest.mark.parametrize("case", list(prompt_cases(256, 64)))
@torch.no_grad()
def test_prompt_encoder_and_decoder_match(tiny_pair, case, code_path):
    reference, ours = tiny_pair
    prompts = prompt_cases(256, 64)[case]
    sparse_ref, dense_ref = reference.prompt_encoder(**prompts)
    sparse, dense = ours.prompt_encoder(**prompts)
    assert sparse.shape == sparse_ref.shape and dense.shape == dense_ref.shape
    if sparse.numel():
        assert max_diff(sparse, sparse_ref) <= TINY_TOL
    assert max_diff(dense, dense_ref) <= TINY_TOL
    assert max_diff(ours.prompt_encoder.get_dense_pe(), reference.prompt_encoder.get_dense_pe()) <= TINY_TOL

    embedding = reference.image_encoder(reference.preprocess(random_image(256)))
    for multimask in (True, False):
        logits_ref, iou_ref = reference.mask_decoder(embedding, reference.prompt_encoder.get_dense_pe(),
                                                     sparse_ref, dense_ref, multimask)
        logits, iou = ours.mask_decoder(embedding, ours.prompt_encoder.get_dense_pe(), sparse, dense, multimask)
        assert logits.shape == logits_ref.shape == (sparse.shape[0], 3 if multimask else 1, 64, 64)
        assert max_diff(logits, logits_ref) <= TINY_TOL
        assert max_diff(iou, iou_ref) <= TINY_TOL


@torch.no_grad()
def test_forward_batch_api_matches(tiny_pair, code_path):
    reference, ours = tiny_pair
    generator = torch.Generator().manual_seed(2)
    batch = [
        {"image": torch.rand(3, 256, 192, generator=generator) * 255, "original_size": (400, 300),
         "point_coords": torch.tensor([[[100.0, 80.0], [30.0, 200.0]]]), "point_labels": torch.tensor([[1, 0]])},
        {"image": torch.rand(3, 160, 256, generator=generator) * 255, "original_size": (160, 256),
         "boxes": torch.tensor([[10.0, 20.0, 200.0, 150.0], [0.0, 0.0, 50.0, 60.0]])},
    ]
    for multimask in (True, False):
        expected = reference(batch, multimask_output=multimask)
        actual = ours(batch, multimask_output=multimask)
        for exp, act in zip(expected, actual):
            assert act["masks"].dtype == torch.bool and act["masks"].shape == exp["masks"].shape
            assert max_diff(act["low_res_logits"], exp["low_res_logits"]) <= TINY_TOL
            assert max_diff(act["iou_predictions"], exp["iou_predictions"]) <= TINY_TOL
            agreement = (act["masks"] == exp["masks"]).float().mean().item()
            assert agreement >= 0.9999


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_reduced_precision_runs_end_to_end(tiny_pair, dtype, code_path):
    reference, ours = tiny_pair
    model = sam_core.build_sam("vit_tiny")
    model.load_state_dict(ours.state_dict())
    model.to(dtype=dtype)
    image = random_image(256)
    embedding = model.image_encoder(model.preprocess(image))
    sparse, dense = model.prompt_encoder(points=(torch.tensor([[[120.0, 90.0]]]), torch.tensor([[1]])),
                                         boxes=torch.tensor([[20.0, 20.0, 200.0, 180.0]]), masks=None)
    logits, iou = model.mask_decoder(embedding, model.prompt_encoder.get_dense_pe(), sparse, dense, True)
    assert embedding.dtype == logits.dtype == iou.dtype == dtype
    assert torch.isfinite(logits).all() and torch.isfinite(iou).all()
    # Reduced precision stays close to the fp32 reference in relative terms.
    expected = reference.image_encoder(reference.preprocess(image))
    assert max_diff(embedding, expected) <= 0.1 * expected.abs().max().item()


VIT_B_CASES = ("negative_points", "box_and_points", "mask_input")


@pytest.fixture(scope="module")
@torch.no_grad()
def vit_b_reference(tmp_path_factory):
    """The reference vit_b's .pth and its outputs, computed once for both code paths."""
    reference = make_reference_sam(sam_core.SAM_CONFIGS["vit_b"], seed=5)
    path = save_reference_pth(reference, tmp_path_factory.mktemp("vit_b") / "sam_vit_b_random.pth")
    image = random_image(1024, seed=5)
    expected = reference.image_encoder(reference.preprocess(image))
    prompts = prompt_cases(1024, 256)
    decoded = {}
    for case in VIT_B_CASES:
        sparse_ref, dense_ref = reference.prompt_encoder(**prompts[case])
        decoded[case] = reference.mask_decoder(expected, reference.prompt_encoder.get_dense_pe(),
                                               sparse_ref, dense_ref, True)
    return path, image, expected, decoded


@torch.no_grad()
def test_full_vit_b_matches_reference_at_1024(vit_b_reference, code_path):
    """One full-size case: vit_b at 1024x1024, fp32, loaded from the reference's own .pth."""
    path, image, expected, decoded = vit_b_reference
    ours = sam_core.load_sam(path)
    assert ours.config == sam_core.SAM_CONFIGS["vit_b"]
    actual = ours.image_encoder(ours.preprocess(image))
    assert max_diff(actual, expected) <= 1e-3

    prompts = prompt_cases(1024, 256)
    for case in VIT_B_CASES:
        sparse, dense = ours.prompt_encoder(**prompts[case])
        logits_ref, iou_ref = decoded[case]
        logits, iou = ours.mask_decoder(actual, ours.prompt_encoder.get_dense_pe(), sparse, dense, True)
        assert max_diff(logits, logits_ref) <= 1e-3
        assert max_diff(iou, iou_ref) <= 1e-3


@pytest.mark.parametrize("height, width, window", [(14, 14, 7), (16, 13, 6), (5, 9, 4)])
def test_window_partition_pads_with_the_given_token_and_round_trips(height, width, window):
    from sam_core.models.sam.image_encoder import partition_windows, unpartition_windows

    heads, head_dim = 2, 3
    qkv = torch.randn(2, height, width, 3, heads, head_dim)
    pad = torch.randn(3, heads, head_dim)
    windows = partition_windows(qkv, window, pad)
    # The same windows the plain way: pad the grid with the pad token, cut, split heads.
    padded_h, padded_w = -(-height // window) * window, -(-width // window) * window
    grid = pad.expand(2, padded_h, padded_w, 3, heads, head_dim).clone()
    grid[:, :height, :width] = qkv
    grid = grid.view(2, padded_h // window, window, padded_w // window, window, 3, heads, head_dim)
    expected = grid.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, -1, window * window, head_dim)
    assert torch.equal(windows, expected)
    out = torch.empty(2, height, width, heads, head_dim)
    assert torch.equal(unpartition_windows(windows[0], window, out), qkv[..., 0, :, :])

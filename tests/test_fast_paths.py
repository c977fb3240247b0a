"""The fast and plain code paths (``sam_core.fast_paths``) compute the same function.

Every module with two paths is run under both on random weights, every parameter randomised (relative
position tables, biases and LayerNorm weights too, which are zero or one at initialisation and would hide
terms), and compared. Tolerance: max abs difference <= 1e-4 in float32 on outputs of order one, for single
modules and for whole models (vit_tiny and full vit_b at 1024x1024); the two paths differ only in the order
of float operations. Gradients of a tiny encoder + decoder agree within 1e-4 * max(1, the parameter's largest).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import sam_core
from sam_core.layers.norms import LayerNorm2d
from sam_core.models.sam.image_encoder import (
    Attention,
    Block,
    ImageEncoderViT,
    partition_windows,
    unpartition_windows,
    window_partition,
    window_unpartition,
)
from sam_core.models.sam.mask_decoder import DecodedTokens, MaskDecoder
from sam_core.models.sam.transformer import Attention as DecoderAttention
from sam_core.models.sam.transformer import ImageTokens, TwoWayTransformer

TOL = 1e-4


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def assert_close(name: str, fast: torch.Tensor, plain: torch.Tensor, tol: float = TOL) -> None:
    assert fast.shape == plain.shape, name
    diff = max_diff(fast, plain)
    print(f"fast vs plain, {name}: max abs diff {diff:.2e} (max abs value {plain.abs().max().item():.2f})")
    assert diff <= tol, f"{name}: {diff}"


def on_both_paths(fn):
    """fn() with the fast paths on, then off: (fast result, plain result)."""
    results = []
    for enabled in (True, False):
        with sam_core.fast_paths(enabled):
            results.append(fn())
    return results


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter, and the prompt encoder's random projection, random and reproducible: weight matrices
    and kernels scaled by 1/sqrt(fan-in) so that activations stay of order one; biases, embeddings and
    position tables 0.5 * N(0, 1) (they are zero at initialisation); norm weights 1 + 0.5 * N(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    norms = {name for name, sub in module.named_modules() if isinstance(sub, (nn.LayerNorm, LayerNorm2d))}
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.dim() >= 2 and not any(key in name for key in _TABLES):
                param.copy_(noise * param[0].numel() ** -0.5)
            elif name.rpartition(".")[0] in norms and name.endswith("weight"):
                param.copy_(1 + 0.5 * noise)
            else:
                param.copy_(0.5 * noise)
        for name, buffer in module.named_buffers():
            if name.endswith("positional_encoding_gaussian_matrix"):  # random at construction: made reproducible
                buffer.copy_(torch.randn(buffer.shape, generator=generator))
    return module


_TABLES = ("rel_pos", "pos_embed", "point_embed", "mask_embed", "iou_token", "mask_tokens")


@pytest.fixture(autouse=True)
def _restore_switch():
    before = sam_core.fast_paths_enabled()
    yield
    sam_core.fast_paths(before)


def randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ the switch


def test_setter_and_context_manager():
    sam_core.fast_paths(False)
    assert not sam_core.fast_paths_enabled()
    with sam_core.fast_paths(True) as switch:
        assert sam_core.fast_paths_enabled() and switch.enabled
        with sam_core.fast_paths(False):
            assert not sam_core.fast_paths_enabled()
        assert sam_core.fast_paths_enabled()
    assert not sam_core.fast_paths_enabled()
    sam_core.fast_paths(True)
    assert sam_core.fast_paths_enabled()
    with pytest.raises(RuntimeError), sam_core.fast_paths(False):
        raise RuntimeError
    assert sam_core.fast_paths_enabled()


@pytest.mark.parametrize("value, expected", [(None, True), ("0", False), ("False", False), (" no", False),
                                             ("1", True)])
def test_environment_variable_sets_the_initial_value(value, expected):
    env = {key: val for key, val in os.environ.items() if key != "SAM_CORE_FAST_PATHS"}
    if value is not None:
        env["SAM_CORE_FAST_PATHS"] = value
    code = "import sam_core; print(sam_core.fast_paths_enabled())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == str(expected)


# ------------------------------------------------------------------------------------------------ encoder


@pytest.mark.parametrize("window_size, grid", [(0, (9, 9)), (4, (11, 9)), (5, (5, 5))],
                         ids=["global", "windowed_padded", "windowed_whole"])
def test_encoder_attention(window_size, grid):
    attention = randomize_(Attention(dim=32, num_heads=4, grid_size=grid[0], window_size=window_size))
    x = randn(2, *grid, 32)
    with torch.no_grad():
        fast, plain = on_both_paths(lambda: attention(x))
    assert_close(f"encoder Attention window={window_size} grid={grid}", fast, plain)


@pytest.mark.parametrize("height, width, window", [(14, 14, 7), (16, 13, 6), (5, 9, 4), (3, 3, 4)])
def test_window_partition_matches_plain_pad_and_view(height, width, window):
    batch, heads, head_dim = 2, 2, 3
    qkv = randn(batch, height, width, 3, heads, head_dim)
    # Plain: zero-pad the grid, cut it into windows, then split q/k/v and heads.
    windows = window_partition(qkv.flatten(3), window)  # (B * windows, w, w, 3 * heads * hd)
    expected = windows.reshape(-1, window * window, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    expected = expected.reshape(3, -1, window * window, head_dim)
    fast = partition_windows(qkv, window, 0.0)
    assert torch.equal(fast, expected)
    # Round trips: the inverse drops the padding.
    assert torch.equal(window_unpartition(windows, window, (height, width)), qkv.flatten(3))
    out = torch.empty(batch, height, width, heads, head_dim)
    assert torch.equal(unpartition_windows(fast[1], window, out), qkv[..., 1, :, :])


@pytest.mark.parametrize("window_size", [0, 4])
def test_encoder_block(window_size):
    block = randomize_(Block(dim=32, num_heads=4, mlp_ratio=2.0, window_size=window_size, grid_size=10), seed=2)
    x = randn(2, 10, 10, 32)
    with torch.no_grad():
        fast, plain = on_both_paths(lambda: block(x))
    assert_close(f"encoder Block window={window_size}", fast, plain)


def test_image_encoder():
    encoder = ImageEncoderViT(img_size=160, patch_size=16, embed_dim=32, depth=3, num_heads=4,
                              global_attn_indexes=(1,), window_size=4, out_chans=16)
    randomize_(encoder, seed=3)
    images = randn(2, 3, 160, 160)
    with torch.no_grad():
        fast, plain = on_both_paths(lambda: encoder(images))
    assert fast.shape == (2, 16, 10, 10)
    assert_close("ImageEncoderViT (10x10 grid, window 4)", fast, plain)


# ------------------------------------------------------------------------------------------------ decoder


def image_tokens(batch: int, grid: tuple[int, int] = (6, 5), channels: int = 32, seed: int = 4) -> ImageTokens:
    embedding = randn(batch, channels, *grid, seed=seed)
    pe = randn(1, channels, *grid, seed=seed + 1)
    return ImageTokens.from_maps(embedding, pe)


@pytest.mark.parametrize("image_batch", [1, 3])
def test_decoder_cross_attention_tokens_to_image(image_batch):
    attention = randomize_(DecoderAttention(32, num_heads=4, downsample_rate=2), seed=5)
    image = image_tokens(image_batch)
    queries = randn(3, 7, 32, seed=6)
    with torch.no_grad():
        plain = attention(queries, image.tokens_with_pe, image.tokens)
        fast = attention.tokens_to_image(queries, image)
        projected = attention.tokens_to_image(queries, image, attention.k_proj(image.tokens_with_pe),
                                              attention.v_proj(image.tokens))
    assert_close("decoder Attention token->image", fast, plain)
    assert_close("decoder Attention token->image, projected image", projected, plain)


@pytest.mark.parametrize("image_batch", [1, 3])
def test_decoder_cross_attention_image_to_tokens(image_batch):
    attention = randomize_(DecoderAttention(32, num_heads=4, downsample_rate=2), seed=7)
    image = image_tokens(image_batch)
    keys, values = randn(3, 7, 32, seed=8), randn(3, 7, 32, seed=9)
    with torch.no_grad():
        plain = attention(image.tokens_with_pe, keys, values)
        fast = attention.image_to_tokens(image, keys, values)
        projected = attention.image_to_tokens(image, keys, values, attention.q_proj(image.tokens_with_pe))
        with_residual = attention.image_to_tokens(image, keys, values, residual=image.tokens)
    assert_close("decoder Attention image->token", fast, plain)
    assert_close("decoder Attention image->token, projected image", projected, plain)
    assert_close("decoder Attention image->token, residual", with_residual, image.tokens + plain)


def test_decoder_self_attention():
    attention = randomize_(DecoderAttention(32, num_heads=4), seed=10)
    tokens = randn(3, 7, 32, seed=11)
    with torch.no_grad():
        fast, plain = on_both_paths(lambda: attention(tokens, tokens, tokens))
    assert_close("decoder Attention self", fast, plain)


@pytest.mark.parametrize("prepared", [False, True], ids=["unprepared", "first_layer_projected"])
@pytest.mark.parametrize("image_batch", [1, 3])
def test_two_way_transformer(prepared, image_batch):
    transformer = randomize_(TwoWayTransformer(depth=2, embedding_dim=32, num_heads=4, mlp_dim=64), seed=12)
    image = image_tokens(image_batch)
    if prepared:
        image = transformer.project_first_layer(image)
        assert image.first_layer is not None
    points = randn(3, 9, 32, seed=13)
    with torch.no_grad():
        (fast_tokens, fast_image), (plain_tokens, plain_image) = on_both_paths(
            lambda: transformer(image, None, points))
        fast_outputs, _ = transformer(image, None, points, num_outputs=5)
    assert_close(f"TwoWayTransformer tokens ({'prepared' if prepared else 'unprepared'})", fast_tokens, plain_tokens)
    assert_close(f"TwoWayTransformer image ({'prepared' if prepared else 'unprepared'})", fast_image, plain_image)
    assert_close("TwoWayTransformer first outputs", fast_outputs, plain_tokens[:, :5])


def small_decoder(seed: int = 14) -> MaskDecoder:
    transformer = TwoWayTransformer(depth=2, embedding_dim=32, num_heads=4, mlp_dim=64)
    return randomize_(MaskDecoder(transformer_dim=32, transformer=transformer, iou_head_hidden_dim=32), seed=seed)


def test_mask_upscaling():
    decoder = small_decoder()
    decoded = DecodedTokens(mask_tokens=randn(3, 4, 32, seed=15), image_tokens=randn(3, 6, 5, 32, seed=16),
                            iou_pred=randn(3, 4, seed=17))
    with torch.no_grad():
        fast, plain = on_both_paths(lambda: decoder.masks_from_tokens(decoded, slice(1, None)))
    assert fast.shape == (3, 3, 24, 20)
    assert_close("mask upscaling + hypernetwork", fast, plain)


def test_mask_decoder():
    decoder = small_decoder()
    embedding, pe = randn(1, 32, 6, 5, seed=18), randn(1, 32, 6, 5, seed=19)
    sparse = randn(3, 4, 32, seed=20)
    no_mask = randn(1, 32, 1, 1, seed=21).expand(3, 32, 6, 5)
    masks = randn(3, 32, 6, 5, seed=22)
    with torch.no_grad():
        for name, dense in (("no-mask dense", no_mask), ("mask dense", masks)):
            for multimask in (True, False):
                fast, plain = on_both_paths(lambda dense=dense, multimask=multimask: decoder(
                    embedding, pe, sparse, dense, multimask))
                assert_close(f"MaskDecoder logits, {name}, multimask={multimask}", fast[0], plain[0])
                assert_close(f"MaskDecoder IoU, {name}, multimask={multimask}", fast[1], plain[1])
        # One prepared image for many prompts: forward's results with the no-mask embedding, on both paths.
        prepared = decoder.prepare_image(embedding, pe, no_mask[:1])
        fast, plain = on_both_paths(lambda: decoder.decode(prepared, sparse, True))
        expected = decoder(embedding, pe, sparse, no_mask, True)
        for name, (logits, iou) in (("fast", fast), ("plain", plain)):
            assert_close(f"MaskDecoder prepare_image+decode ({name}) vs forward, logits", logits, expected[0])
            assert_close(f"MaskDecoder prepare_image+decode ({name}) vs forward, IoU", iou, expected[1])


# ------------------------------------------------------------------------------------------------ whole models


def run_model(model: sam_core.Sam, images: torch.Tensor) -> list[torch.Tensor]:
    """Embeddings, then low-res logits and IoU for a few prompt kinds on the first image."""
    size = model.image_encoder.img_size
    generator = torch.Generator().manual_seed(30)
    points = torch.rand(3, 2, 2, generator=generator) * size
    labels = torch.tensor([[1, 0], [1, 1], [0, 1]])
    boxes = torch.sort(torch.rand(3, 2, 2, generator=generator) * size, dim=1).values.reshape(3, 4)
    mask = torch.randn(3, 1, size // 4, size // 4, generator=generator)
    embeddings = model.image_encoder(model.preprocess(images))
    dense_pe = model.prompt_encoder.get_dense_pe()
    outputs = [embeddings]
    for prompts in (dict(points=(points, labels), boxes=None, masks=None),
                    dict(points=(points[:, :1], labels[:, :1]), boxes=boxes, masks=mask)):
        sparse, dense = model.prompt_encoder(**prompts)
        outputs += model.mask_decoder(embeddings[:1], dense_pe, sparse, dense, True)
    return outputs


@torch.no_grad()
def test_vit_tiny_fast_and_plain_agree():
    model = randomize_(sam_core.build_sam("vit_tiny"), seed=31)
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(32)) * 255
    fast, plain = on_both_paths(lambda: run_model(model, images))
    for name, a, b in zip(("embeddings", "logits", "IoU", "logits (box+mask)", "IoU (box+mask)"), fast, plain):
        assert_close(f"vit_tiny {name}", a, b)


@torch.no_grad()
def test_full_vit_b_fast_and_plain_agree_at_1024():
    # The embeddings usually agree bit for bit here: with head_dim 64 the attention scale is 1/8, exact in
    # float, and both paths then sum the scores in the same order. The decoder's differ by rounding.
    model = randomize_(sam_core.build_sam(sam_core.SAM_CONFIGS["vit_b"]), seed=33)
    images = torch.rand(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(34)) * 255
    fast, plain = on_both_paths(lambda: run_model(model, images))
    for name, a, b in zip(("embeddings", "logits", "IoU", "logits (box+mask)", "IoU (box+mask)"), fast, plain):
        assert_close(f"vit_b {name}", a, b)


# ------------------------------------------------------------------------------------------------ gradients


def test_gradients_agree_on_a_tiny_encoder_and_decoder():
    config = sam_core.SamConfig(image_size=96, encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=4,
                                encoder_global_attn_indexes=(1,), window_size=4, prompt_embed_dim=32,
                                decoder_mlp_dim=64, iou_head_hidden_dim=32)
    model = randomize_(sam_core.build_sam(config), seed=35).train()
    images = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(36)) * 255
    points = (torch.tensor([[[20.0, 30.0], [70.0, 50.0]], [[5.0, 90.0], [40.0, 40.0]]]), torch.tensor([[1, 0]] * 2))
    target = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(37))

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        embeddings = model.image_encoder(model.preprocess(images))
        sparse, dense = model.prompt_encoder(points=points, boxes=None, masks=None)
        logits, iou = model.mask_decoder(embeddings, model.prompt_encoder.get_dense_pe(), sparse, dense, True)
        loss = (logits * target).sum() + iou.square().sum()
        loss.backward()
        # No gradient reads as zero: the fast path leaves out the token->image key biases, which add a constant
        # to each softmax row and so have zero gradient (the plain path computes it, as rounding-size values).
        return {name: torch.zeros_like(param) if param.grad is None else param.grad.clone()
                for name, param in model.named_parameters()}

    fast, plain = on_both_paths(gradients)
    assert any(name.startswith("image_encoder.blocks.0.attn.rel_pos") for name in fast)
    # Relative to each parameter's largest gradient where that exceeds one (the gradients reach the hundreds).
    def relative(name: str) -> float:
        return max_diff(fast[name], plain[name]) / max(1.0, plain[name].abs().max().item())

    worst = max(fast, key=relative)
    print(f"gradients: worst relative diff {relative(worst):.2e} ({worst}, max abs {plain[worst].abs().max():.2f}); "
          f"largest gradient {max(g.abs().max().item() for g in plain.values()):.1f}")
    assert relative(worst) <= TOL

"""Checkpoint loading and saving: Meta .pth, Hugging Face checkpoints (directory and hub cache), sam_core
safetensors, official downloads (served locally), `sam-convert`, and every bad-input row for checkpoints.

Independent references: Meta's `segment_anything` writes the .pth files; `transformers.SamModel` writes the
Hugging Face checkpoints and computes the masks our model must reproduce from them.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import sam_core
from sam_core.cli import convert_main
from sam_core.io import checkpoints as checkpoint
from sam_core.models.sam.config import SAM_CONFIGS, SamConfig
from sam_core.models.sam.parity import make_reference_sam, save_reference_pth

HF_TOL = 1e-4


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def assert_same_state(a: torch.nn.Module | dict, b: torch.nn.Module | dict) -> None:
    a = a if isinstance(a, dict) else a.state_dict()
    b = b if isinstance(b, dict) else b.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


@torch.no_grad()
def run_model(sam: torch.nn.Module, seed: int = 0) -> list[torch.Tensor]:
    """Image embedding plus decoder outputs for a point+box prompt and a mask prompt."""
    size = sam.image_encoder.img_size
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, size, size, generator=generator) * 255
    points = torch.rand(2, 3, 2, generator=generator) * size
    labels = torch.tensor([[1, 0, 1], [1, 1, 0]])
    boxes = torch.tensor([[10.0, 20.0, 0.6 * size, 0.7 * size], [0.0, 5.0, 0.3 * size, 0.9 * size]])
    mask = torch.randn(1, 1, 4 * size // 16, 4 * size // 16, generator=generator)
    embedding = sam.image_encoder(sam.preprocess(image))
    outputs = [embedding]
    for prompts, multimask in (dict(points=(points, labels), boxes=boxes, masks=None), True), \
                               (dict(points=(points[:1], labels[:1]), boxes=None, masks=mask), False):
        sparse, dense = sam.prompt_encoder(**prompts)
        outputs += sam.mask_decoder(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask)
    return outputs


# ------------------------------------------------------------------------------------------------ Meta .pth

def test_meta_pth_loads_with_inferred_config(tiny_pth, tiny_reference, tiny_config):
    sam = sam_core.load_sam(tiny_pth)
    assert isinstance(sam, sam_core.Sam)
    assert sam.config == tiny_config
    assert_same_state(sam, tiny_reference)
    assert not sam.training


def test_vit_b_shapes_inferred(tmp_path):
    reference = make_reference_sam(SAM_CONFIGS["vit_b"], seed=3)
    path = save_reference_pth(reference, tmp_path / "sam_vit_b_01ec64.pth")
    try:
        sam = sam_core.load_sam(path)
        assert sam.config == SAM_CONFIGS["vit_b"]
        assert checkpoint.model_type_name(sam.config) == "vit_b"
        assert_same_state(sam, reference)
    finally:
        path.unlink()


def test_custom_shapes_inferred():
    custom = SamConfig(image_size=128, patch_size=8, encoder_embed_dim=48, encoder_depth=3, encoder_num_heads=4,
                       encoder_global_attn_indexes=(0,), window_size=4, encoder_mlp_ratio=2.0, prompt_embed_dim=32,
                       mask_in_chans=8, decoder_depth=1, decoder_mlp_dim=64, num_multimask_outputs=2,
                       iou_head_depth=2, iou_head_hidden_dim=40)
    state = make_reference_sam(custom).state_dict()
    assert checkpoint.infer_config(state) == custom
    assert checkpoint.model_type_name(custom) == "custom (embed_dim=48, depth=3, image_size=128)"


# --------------------------------------------------------------------------------------------- Hugging Face

def hf_sam_model(decoder_layer_norm_eps: float = 1e-5):
    """A transformers SamModel with vit_tiny's shapes and random weights.

    transformers' two-way transformer uses LayerNorm eps 1e-6 where Meta's uses the PyTorch default
    1e-5; eps is not a weight, so the parity model sets Meta's value to isolate the key mapping.
    """
    from transformers import SamConfig as HFSamConfig
    from transformers import SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, SamVisionConfig

    vision = SamVisionConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=2, window_size=6,
                             global_attn_indexes=[1, 3], image_size=256, patch_size=16, output_channels=64,
                             num_pos_feats=32)
    prompt = SamPromptEncoderConfig(hidden_size=64, image_size=256, patch_size=16, mask_input_channels=16)
    decoder = SamMaskDecoderConfig(hidden_size=64, mlp_dim=256, iou_head_hidden_dim=64,
                                   layer_norm_eps=decoder_layer_norm_eps)
    torch.manual_seed(5)
    model = SamModel(HFSamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                                 mask_decoder_config=decoder.to_dict())).eval()
    with torch.no_grad():  # transformers initialises the vision weights near zero: use unit-scale ones
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn_like(param) / math.sqrt(param[0].numel()))
            else:
                param.add_(0.1 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def hf_model():
    return hf_sam_model()


@pytest.fixture(scope="module")
def hf_dirs(hf_model, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(root / "safetensors")
    # transformers 5 writes safetensors even with safe_serialization=False; write the legacy
    # pytorch_model.bin layout (the full state dict, tied copy included) ourselves.
    (root / "bin").mkdir()
    shutil.copy(root / "safetensors" / "config.json", root / "bin" / "config.json")
    torch.save(hf_model.state_dict(), root / "bin" / "pytorch_model.bin")
    return {"safetensors": root / "safetensors", "bin": root / "bin"}


@pytest.mark.parametrize("layout", ["safetensors", "bin"])
@torch.no_grad()
def test_hf_checkpoint_matches_transformers(hf_model, hf_dirs, tiny_config, layout):
    assert sorted(p.name for p in hf_dirs[layout].iterdir()) == sorted(
        ["config.json", "model.safetensors" if layout == "safetensors" else "pytorch_model.bin"])
    sam = sam_core.load_sam(hf_dirs[layout])
    assert sam.config == tiny_config

    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    theirs_embedding = hf_model.get_image_embeddings(pixels)
    ours_embedding = sam.image_encoder(pixels)
    assert max_diff(ours_embedding, theirs_embedding) <= HF_TOL

    points = torch.tensor([[[[30.0, 40.0], [100.0, 200.0]], [[10.0, 250.0], [128.0, 128.0]]]])
    labels = torch.tensor([[[1, 0], [1, 1]]])
    boxes = torch.tensor([[[20.0, 30.0, 200.0, 220.0], [0.0, 0.0, 100.0, 90.0]]])
    mask = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    cases = {
        "points": (dict(input_points=points, input_labels=labels), dict(points=(points[0], labels[0]))),
        "boxes": (dict(input_boxes=boxes), dict(boxes=boxes[0])),
        "points_and_boxes": (dict(input_points=points, input_labels=labels, input_boxes=boxes),
                             dict(points=(points[0], labels[0]), boxes=boxes[0])),
        "mask": (dict(input_points=points[:, :1], input_labels=labels[:, :1], input_masks=mask),
                 dict(points=(points[0, :1], labels[0, :1]), masks=mask)),
    }
    for name, (their_prompts, our_prompts) in cases.items():
        for multimask in (True, False):
            theirs = hf_model(pixel_values=pixels, multimask_output=multimask, **their_prompts)
            sparse, dense = sam.prompt_encoder(**{"points": None, "boxes": None, "masks": None, **our_prompts})
            masks, iou = sam.mask_decoder(ours_embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense,
                                          multimask)
            assert masks.shape == theirs.pred_masks[0].shape, name
            assert max_diff(masks, theirs.pred_masks[0]) <= HF_TOL, name
            assert max_diff(iou, theirs.iou_scores[0]) <= HF_TOL, name


def test_hf_names_map_onto_meta_names(hf_model, tiny_reference):
    mapped = checkpoint.hf_to_meta_state_dict(hf_model.state_dict())
    expected = tiny_reference.state_dict()
    assert sorted(mapped) == sorted(expected)
    assert all(mapped[name].shape == expected[name].shape for name in expected)


def test_hf_configs_translate_to_registry_entries():
    from transformers import SamConfig as HFSamConfig
    from transformers import SamVisionConfig

    assert checkpoint.sam_config_from_hf(HFSamConfig().to_dict()) == SAM_CONFIGS["vit_b"]
    assert checkpoint.sam_config_from_hf({"model_type": "sam"}) == SAM_CONFIGS["vit_b"]  # transformers' defaults
    huge = SamVisionConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                           global_attn_indexes=[7, 15, 23, 31])
    assert checkpoint.sam_config_from_hf(HFSamConfig(vision_config=huge.to_dict()).to_dict()) == SAM_CONFIGS["vit_h"]
    with pytest.raises(sam_core.CheckpointError, match="attention_downsample_rate=4"):
        checkpoint.sam_config_from_hf({"model_type": "sam", "mask_decoder_config": {"attention_downsample_rate": 4}})


def write_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> None:
    """Lay files out the way huggingface_hub caches a model repo."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


def test_hub_id_resolves_offline_from_cache(hf_dirs, tmp_path):
    cache = tmp_path / "hub"
    saved = hf_dirs["safetensors"]
    write_hub_cache(cache, "sam-core-test/sam-tiny",
                    {name: saved / name for name in ("config.json", "model.safetensors")})
    script = f"""
import json, sam_core
result = {{}}
sam = sam_core.load_sam("sam-core-test/sam-tiny")
sam_core.save_sam(sam, {str(tmp_path / "from_hub.safetensors")!r})
try:
    sam_core.load_sam("sam-core-test/not-cached")
except sam_core.CheckpointError as error:
    result["error"] = str(error)
print(json.dumps(result))
"""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same_state(sam_core.load_sam(tmp_path / "from_hub.safetensors"), sam_core.load_sam(hf_dirs["safetensors"]))
    message = json.loads(done.stdout.strip().splitlines()[-1])["error"]
    for expected in ("sam-core-test/not-cached", "HF_HUB_OFFLINE", "config.json", "model.safetensors", str(cache)):
        assert expected in message


# ----------------------------------------------------------------------------------- own format, converter

def test_save_load_round_trip_is_bit_identical(tiny_pth, tmp_path):
    original = sam_core.load_sam(tiny_pth)
    path = sam_core.save_sam(original, tmp_path / "tiny.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata[checkpoint.FORMAT_KEY] == checkpoint.FORMAT_VERSION
    assert json.loads(metadata[checkpoint.CONFIG_KEY]) == original.config.to_dict()
    reloaded = sam_core.load_sam(path)
    assert reloaded.config == original.config
    assert_same_state(reloaded, original)
    for ours, theirs in zip(run_model(reloaded), run_model(original), strict=True):
        assert torch.equal(ours, theirs)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.safetensors"]  # no temporary file left


def test_round_trip_keeps_config_that_shapes_cannot_tell(tmp_path):
    four_heads = SamConfig(**{**SAM_CONFIGS["vit_tiny"].to_dict(), "decoder_num_heads": 4})
    sam = sam_core.build_sam(four_heads)
    reloaded = sam_core.load_sam(sam_core.save_sam(sam, tmp_path / "heads4.safetensors"))
    assert reloaded.config.decoder_num_heads == 4
    for ours, theirs in zip(run_model(reloaded), run_model(sam), strict=True):
        assert torch.equal(ours, theirs)


def test_bfloat16_round_trip_keeps_dtype(tiny_pth, tmp_path):
    original = sam_core.load_sam(tiny_pth, dtype=torch.bfloat16)
    reloaded = sam_core.load_sam(sam_core.save_sam(original, tmp_path / "bf16.safetensors"))
    assert next(reloaded.parameters()).dtype == torch.bfloat16
    assert_same_state(reloaded, original)


@pytest.mark.parametrize("source", ["pth", "hf"])
def test_sam_convert(source, tiny_pth, hf_dirs, tmp_path, capsys):
    src = tiny_pth if source == "pth" else hf_dirs["safetensors"]
    dst = tmp_path / "converted.safetensors"
    assert convert_main([str(src), str(dst)]) == 0
    assert_same_state(sam_core.load_sam(dst), sam_core.load_sam(src))
    assert str(dst) in capsys.readouterr().out


def test_sam_convert_options(tiny_pth, tmp_path, capsys):
    dst = tmp_path / "converted.safetensors"
    assert convert_main([str(tiny_pth), str(dst), "--config", "vit_tiny", "--dtype", "bfloat16"]) == 0
    converted = sam_core.load_sam(dst)
    assert next(converted.parameters()).dtype == torch.bfloat16
    assert_same_state(converted, sam_core.load_sam(tiny_pth, dtype=torch.bfloat16))

    before = dst.stat().st_mtime_ns
    assert convert_main([str(tiny_pth), str(dst)]) == 0  # output already there: skipped
    assert dst.stat().st_mtime_ns == before and "--overwrite" in capsys.readouterr().err
    assert convert_main([str(tiny_pth), str(dst), "--overwrite"]) == 0
    assert next(sam_core.load_sam(dst).parameters()).dtype == torch.float32

    assert convert_main([str(tiny_pth), str(tmp_path / "b.safetensors"), "--config", "vit_b"]) == 1
    assert "vit_tiny" in capsys.readouterr().err
    assert convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "c.safetensors")]) == 1
    assert "missing.pth" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted.safetensors"]


# -------------------------------------------------------------------------------------- official download

class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def weights_server(tmp_path, tiny_pth, monkeypatch):
    """A local stand-in for Meta's download server that serves the tiny model as an 'official' file."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(tiny_pth, served / "sam_vit_tiny_test.pth")
    CountingHandler.requests = []
    handler = lambda *args, **kwargs: CountingHandler(*args, directory=str(served), **kwargs)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SAM_CORE_WEIGHTS_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setenv("SAM_CORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SAM_CORE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    data = (served / "sam_vit_tiny_test.pth").read_bytes()
    yield checkpoint.OfficialCheckpoint("sam_vit_tiny_test.pth", hashlib.sha256(data).hexdigest(), len(data))
    server.shutdown()
    server.server_close()


def test_registry_name_downloads_verifies_and_caches(weights_server, tiny_reference, tmp_path, monkeypatch):
    monkeypatch.setitem(checkpoint.OFFICIAL_CHECKPOINTS, "vit_tiny", weights_server)
    sam = sam_core.load_sam("vit_tiny")
    assert_same_state(sam, tiny_reference)
    assert CountingHandler.requests == ["/sam_vit_tiny_test.pth"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["sam_vit_tiny_test.pth"]

    assert_same_state(sam_core.load_sam("vit_tiny"), tiny_reference)
    assert len(CountingHandler.requests) == 1  # served from the cache the second time


def test_download_with_wrong_sha256_is_deleted(weights_server, tmp_path, monkeypatch):
    wrong = checkpoint.OfficialCheckpoint(weights_server.filename, "0" * 64, weights_server.size)
    monkeypatch.setitem(checkpoint.OFFICIAL_CHECKPOINTS, "vit_tiny", wrong)
    with pytest.raises(sam_core.CheckpointError, match="sha256 mismatch"):
        sam_core.load_sam("vit_tiny")
    assert len(CountingHandler.requests) == 1
    assert list((tmp_path / "cache").iterdir()) == []


def test_offline_and_not_cached_says_what_to_fetch(weights_server, tmp_path, monkeypatch):
    monkeypatch.setitem(checkpoint.OFFICIAL_CHECKPOINTS, "vit_tiny", weights_server)
    monkeypatch.setenv("SAM_CORE_OFFLINE", "1")
    with pytest.raises(sam_core.CheckpointError) as error:
        sam_core.load_sam("vit_tiny")
    message = str(error.value)
    assert "offline" in message and weights_server.sha256 in message
    assert os.environ["SAM_CORE_WEIGHTS_URL"] + "sam_vit_tiny_test.pth" in message
    assert str(tmp_path / "cache" / "sam_vit_tiny_test.pth") in message
    assert CountingHandler.requests == []


def test_official_table_names_the_published_files():
    def files(family: str) -> dict[str, str]:
        return {name: entry.filename for name, entry in sam_core.FAMILIES[family].official_checkpoints.items()}

    assert files("sam") == {
        "vit_h": "sam_vit_h_4b8939.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_b": "sam_vit_b_01ec64.pth"}
    assert files("mobile_sam") == {"vit_t": "mobile_sam.pt"}
    assert files("sam_hq") == {f"sam_hq_{size}": f"sam_hq_{size}.pth"
                               for size in ("vit_b", "vit_l", "vit_h", "vit_tiny")}
    assert files("sam2") == {
        f"{version}_hiera_{size}": f"{version}_hiera_{size}.pt" for version in ("sam2", "sam2.1")
        for size in ("tiny", "small", "base_plus", "large")}
    with pytest.raises(sam_core.CheckpointError, match="no official checkpoint"):
        sam_core.load_sam("vit_tiny")


# ------------------------------------------------------------------------------------------- bad input

def record_call(marker: str) -> None:
    Path(marker).write_text("ran")


class RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return record_call, (str(self.marker),)


def test_missing_file(tmp_path):
    with pytest.raises(sam_core.CheckpointError, match="not found.*sam_vit_b_missing.pth"):
        sam_core.load_sam(tmp_path / "sam_vit_b_missing.pth")


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_truncated_file(tiny_pth, tmp_path, fmt):
    full = tiny_pth if fmt == "pth" else sam_core.save_sam(sam_core.load_sam(tiny_pth), tmp_path / "full.safetensors")
    data = full.read_bytes()
    truncated = tmp_path / f"truncated.{fmt}"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(sam_core.CheckpointError, match=f"{truncated}.*truncated"):
        sam_core.load_sam(truncated)


@pytest.mark.parametrize("content", ["random", "empty", "list", "unrelated_tensors"])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "file.pth"
    if content == "random":
        path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                       dtype=torch.uint8).numpy().tobytes())
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "list":
        torch.save([torch.zeros(3)], path)
    else:
        torch.save({"backbone.weight": torch.zeros(3)}, path)
    with pytest.raises(sam_core.CheckpointError, match=str(path)):
        sam_core.load_sam(path)


def test_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "sam_evil.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1), "payload": RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(sam_core.CheckpointError, match="refused.*record_call"):
        sam_core.load_sam(path)
    assert not marker.exists()


def test_wrong_model_type_names_the_detected_one(tiny_pth):
    with pytest.raises(sam_core.CheckpointError) as error:
        sam_core.load_sam(tiny_pth, config="vit_b")
    message = str(error.value)
    assert str(tiny_pth) in message
    assert "requested model vit_b" in message and "holds a vit_tiny model" in message
    assert "missing keys (112)" in message and "image_encoder.blocks.4.norm1.weight" in message
    assert "image_encoder.pos_embed (1, 16, 16, 64) vs (1, 64, 64, 768)" in message


def test_extra_and_missing_keys_are_listed(tiny_reference, tmp_path):
    state = dict(tiny_reference.state_dict())
    del state["mask_decoder.iou_token.weight"]
    state["mask_decoder.extra_head.weight"] = torch.zeros(2)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    with pytest.raises(sam_core.CheckpointError) as error:
        sam_core.load_sam(path)
    message = str(error.value)
    assert "holds a vit_tiny model" in message
    assert "missing keys (1): mask_decoder.iou_token.weight" in message
    assert "unexpected keys (1): mask_decoder.extra_head.weight" in message


def test_shape_mismatch_is_listed(tiny_reference, tmp_path):
    state = dict(tiny_reference.state_dict())
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 32)
    path = tmp_path / "reshaped.pth"
    torch.save(state, path)
    with pytest.raises(sam_core.CheckpointError, match=r"shape mismatches.*\(1\): "
                                                       r"mask_decoder.iou_token.weight \(1, 32\) vs \(1, 64\)"):
        sam_core.load_sam(path)


def test_hf_directory_problems(hf_dirs, tmp_path):
    with pytest.raises(sam_core.CheckpointError, match="neither model.safetensors nor pytorch_model.bin"):
        sam_core.load_sam(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(hf_dirs["safetensors"], other)
    (other / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(sam_core.CheckpointError, match="'vit' model, not SAM"):
        sam_core.load_sam(other)


# ----------------------------------------------------------------------------------------- dtype, device

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_load_runs_end_to_end(tiny_pth, dtype):
    sam = sam_core.load_sam(tiny_pth, device="cpu", dtype=dtype)
    assert {p.dtype for p in sam.parameters()} == {dtype}
    assert sam.device == torch.device("cpu")
    reduced = run_model(sam)
    exact = run_model(sam_core.load_sam(tiny_pth))
    for low, full in zip(reduced, exact, strict=True):
        assert low.dtype == dtype and torch.isfinite(low).all()
        assert max_diff(low, full) <= 0.1 * full.abs().max().item()

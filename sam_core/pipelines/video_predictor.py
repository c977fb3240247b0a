"""VideoPredictor: track objects through a video from clicks, boxes or masks on any frame, with the methods,
signatures, return values and results of Meta's ``SAM2VideoPredictor`` (``sam2==1.1.0``).

The inference state is a dict with Meta's keys. Objects are tracked one at a time on each frame, as there.
Unlike Meta's, frames are decoded on demand (see :class:`~sam_core.io.video_frames.VideoFrames`) and a
tracked frame's outputs are dropped once no later frame can read them (farther than the memory's reach from
the frame being tracked and from every prompted frame), so memory does not grow with the video's length.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sam_core.io.video_frames import VideoFrames
from sam_core.models.sam2.config import Sam2Config
from sam_core.models.sam2.model import BOX_CORNER_LABELS
from sam_core.models.sam2.video.memory_bank import memory_reach
from sam_core.models.sam2.video.model import FrameFeatures, FrameOutput, Sam2Video, keep_highest_object
from sam_core.models.sam2.video.occlusion import NO_OBJ_SCORE
from sam_core.pipelines.masks import fill_small_holes

InferenceState = dict[str, Any]
COND, NON_COND = "cond_frame_outputs", "non_cond_frame_outputs"
# Clamp of earlier mask logits fed back with new clicks (as Meta, against rare numerical issues).
PREV_LOGIT_LIMIT = 32.0


class VideoPredictor:
    """Meta's ``SAM2VideoPredictor`` on a :class:`Sam2Video`, with the defaults of its
    ``build_sam2_video_predictor``.

    Args:
        model (Sam2Video): The video model (``build_sam2_video_predictor`` or ``Sam2Video.from_image_model``).
        fill_hole_area (int): Background components of the low-res masks of at most this many pixels are
            filled (default 8; 0: off).
        non_overlap_masks (bool): Keep only the highest scoring object at each pixel of the output masks
            (default False).
        binarize_mask_from_pts_for_mem_enc (bool): Threshold clicked frames' masks before they enter memory
            (default True).
        clear_non_cond_mem_around_input (bool): Forget the tracked frames around a newly prompted frame
            (default False).
        add_all_frames_to_correct_as_cond (bool): A click on a tracked frame makes it a conditioning frame
            (default False).

    Raises:
        TypeError: If ``model`` is not a ``Sam2Video``.
    """

    def __init__(self, model: Sam2Video, fill_hole_area: int = 8, non_overlap_masks: bool = False,
                 binarize_mask_from_pts_for_mem_enc: bool = True, clear_non_cond_mem_around_input: bool = False,
                 add_all_frames_to_correct_as_cond: bool = False) -> None:
        if not isinstance(model, Sam2Video):
            raise TypeError(f"VideoPredictor needs a Sam2Video (build_sam2_video_predictor or "
                            f"Sam2Video.from_image_model), got {type(model).__name__}")
        self.model = model
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.binarize_mask_from_pts_for_mem_enc = binarize_mask_from_pts_for_mem_enc
        self.clear_non_cond_mem_around_input = clear_non_cond_mem_around_input
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond

    @property
    def config(self) -> Sam2Config:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def reach(self) -> int:
        """Frames farther than this from the one being tracked are not read by it."""
        config = self.config
        return memory_reach(config.num_maskmem, config.memory_temporal_stride_for_eval,
                            config.max_obj_ptrs_in_encoder)

    # ------------------------------------------------------------------------------------------------ state

    @torch.inference_mode()
    def init_state(self, video_path: str | os.PathLike, offload_video_to_cpu: bool = False,
                   offload_state_to_cpu: bool = False, async_loading_frames: bool = False) -> InferenceState:
        """A new inference state for a video; the first frame is encoded at once.

        Args:
            video_path (str or PathLike): A folder of JPEG frames named by their index (``00000.jpg``...) or a
                video file (read with OpenCV).
            offload_video_to_cpu (bool): Meta's option, recorded in the state; frames are read on demand (a few
                recent ones kept) whatever it says.
            offload_state_to_cpu (bool): Keep the tracked frames' outputs and memories on the CPU instead of
                the model's device (less GPU memory, slower).
            async_loading_frames (bool): Meta's option, ignored: frames are read on demand.

        Returns:
            (dict): The inference state, with Meta's keys (``"num_frames"``, ``"video_height"``,
                ``"video_width"``, ``"obj_ids"``, ``"output_dict_per_obj"``...), to pass to every other method.

        Raises:
            ValueError: If ``video_path`` is neither a folder nor a file, the folder holds no JPEG frames or
                frames not named by their index, or OpenCV cannot open or decode the video file.
        """
        frames = VideoFrames(video_path, self.image_size, *self.model.input_statistics)
        device = self.device
        state: InferenceState = {
            "images": frames, "num_frames": len(frames), "offload_video_to_cpu": offload_video_to_cpu,
            "offload_state_to_cpu": offload_state_to_cpu, "video_height": frames.video_height,
            "video_width": frames.video_width, "device": device,
            "storage_device": torch.device("cpu") if offload_state_to_cpu else device,
            "point_inputs_per_obj": {}, "mask_inputs_per_obj": {}, "cached_features": {}, "constants": {},
            "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(), "obj_ids": [],
            "output_dict_per_obj": {}, "temp_output_dict_per_obj": {}, "frames_tracked_per_obj": {},
        }
        self._frame_features(state, 0)  # the first frame is the likeliest to be prompted
        return state

    def _obj_id_to_idx(self, state: InferenceState, obj_id: Any) -> int:
        """The object's index, a new one for a new id (objects may be added at any time)."""
        if obj_id in state["obj_id_to_idx"]:
            return state["obj_id_to_idx"][obj_id]
        index = len(state["obj_id_to_idx"])
        state["obj_id_to_idx"][obj_id] = index
        state["obj_idx_to_id"][index] = obj_id
        state["obj_ids"] = list(state["obj_id_to_idx"])
        state["point_inputs_per_obj"][index] = {}
        state["mask_inputs_per_obj"][index] = {}
        state["output_dict_per_obj"][index] = {COND: {}, NON_COND: {}}
        state["temp_output_dict_per_obj"][index] = {COND: {}, NON_COND: {}}
        state["frames_tracked_per_obj"][index] = {}
        return index

    def _check_frame(self, state: InferenceState, frame_idx: int) -> None:
        if not 0 <= frame_idx < state["num_frames"]:
            raise ValueError(f"frame_idx {frame_idx} is outside the video's frames 0..{state['num_frames'] - 1}")

    # ---------------------------------------------------------------------------------------------- prompts

    @torch.inference_mode()
    def add_new_points_or_box(self, inference_state: InferenceState, frame_idx: int, obj_id: Any,
                              points: Any = None, labels: Any = None, clear_old_points: bool = True,
                              normalize_coords: bool = True, box: Any = None,
                              ) -> tuple[int, list[Any], torch.Tensor]:
        """Add clicks and/or a box for one object on one frame, and segment that frame.

        Args:
            inference_state (dict): The state from ``init_state``.
            frame_idx (int): The frame, 0 to ``num_frames - 1``.
            obj_id (hashable): The object's id, any hashable (ints in Meta's examples); a new id adds an
                object, at any time.
            points (array-like or None): (N, 2) or (1, N, 2) x, y clicks in video pixels (or fractions of the
                width and height with ``normalize_coords=False``).
            labels (array-like or None): (N,) or (1, N) labels, 1 positive, 0 negative. Given with ``points``.
            clear_old_points (bool): True (default): replace the object's earlier clicks on this frame; False:
                add to them.
            normalize_coords (bool): True (default): coordinates are video pixels. False: fractions in [0, 1].
            box (array-like or None): x0, y0, x1, y1 in the same frame; goes before the clicks (needs
                ``clear_old_points=True``).

        Returns:
            (int): ``frame_idx``.
            (list): Every object's id, in the order of the masks.
            (torch.Tensor): Every object's mask logits on this frame, (objects, 1, H, W) float32 at the video's
                resolution on the model's device (> 0 is the mask; objects without an output there: -1024).

        Raises:
            ValueError: If ``frame_idx`` is outside the video, only one of ``points`` / ``labels`` is given,
                neither points nor a box is given, their counts differ, or a box comes with
                ``clear_old_points=False``.
        """
        state = inference_state
        self._check_frame(state, frame_idx)
        if (points is not None) != (labels is not None):
            raise ValueError("points and labels must be provided together")
        if points is None and box is None:
            raise ValueError("at least one of points or box must be provided as input")
        points = torch.zeros(0, 2) if points is None else torch.as_tensor(np.asarray(points), dtype=torch.float32)
        labels = (torch.zeros(0, dtype=torch.int32) if labels is None
                  else torch.as_tensor(np.asarray(labels), dtype=torch.int32))
        points = points.reshape(1, -1, 2) if points.dim() == 2 else points.float()
        labels = labels.reshape(1, -1) if labels.dim() == 1 else labels
        if points.shape[:2] != labels.shape[:2]:
            raise ValueError(f"points {tuple(points.shape)} and labels {tuple(labels.shape)} differ in number")
        if box is not None:
            if not clear_old_points:
                raise ValueError("cannot add box without clearing old points, since box prompt must be provided "
                                 "before any point prompt (please use clear_old_points=True instead)")
            corners = torch.as_tensor(np.asarray(box), dtype=torch.float32).reshape(1, 2, 2)
            points = torch.cat([corners, points], dim=1)
            labels = torch.cat([torch.tensor([BOX_CORNER_LABELS], dtype=torch.int32), labels], dim=1)
        obj_idx = self._obj_id_to_idx(state, obj_id)
        if normalize_coords:
            points = points / torch.tensor([state["video_width"], state["video_height"]])
        points = (points * self.image_size).to(state["device"])
        labels = labels.to(state["device"])
        previous = None if clear_old_points else state["point_inputs_per_obj"][obj_idx].get(frame_idx)
        if previous is not None:
            points = torch.cat([previous["point_coords"], points], dim=1)
            labels = torch.cat([previous["point_labels"], labels], dim=1)
        point_inputs = {"point_coords": points, "point_labels": labels}
        state["point_inputs_per_obj"][obj_idx][frame_idx] = point_inputs
        state["mask_inputs_per_obj"][obj_idx].pop(frame_idx, None)
        return self._prompted_frame(state, obj_idx, frame_idx, point_inputs, None)

    def add_new_points(self, *args: Any, **kwargs: Any) -> tuple[int, list[Any], torch.Tensor]:
        """Meta's deprecated name of :meth:`add_new_points_or_box`."""
        return self.add_new_points_or_box(*args, **kwargs)

    @torch.inference_mode()
    def add_new_mask(self, inference_state: InferenceState, frame_idx: int, obj_id: Any,
                     mask: Any) -> tuple[int, list[Any], torch.Tensor]:
        """Add a mask prompt for one object on one frame (replacing its clicks there), and segment that frame.

        Args:
            inference_state (dict): The state from ``init_state``.
            frame_idx (int): The frame, 0 to ``num_frames - 1``.
            obj_id (hashable): The object's id; a new id adds an object.
            mask (array-like or torch.Tensor): (H, W), boolean or 0/1, any size (resized to the model's square
                input, then thresholded at 0.5).

        Returns:
            As :meth:`add_new_points_or_box`: (frame_idx, obj_ids, masks (objects, 1, H, W) float32 logits).

        Raises:
            ValueError: If ``frame_idx`` is outside the video or ``mask`` is not two-dimensional.
        """
        state = inference_state
        self._check_frame(state, frame_idx)
        if not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        if mask.dim() != 2:
            raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
        obj_idx = self._obj_id_to_idx(state, obj_id)
        mask_inputs = mask[None, None].float().to(state["device"])
        size = self.image_size
        if tuple(mask.shape) != (size, size):
            mask_inputs = F.interpolate(mask_inputs, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=True)
            mask_inputs = (mask_inputs >= 0.5).float()
        state["mask_inputs_per_obj"][obj_idx][frame_idx] = mask_inputs
        state["point_inputs_per_obj"][obj_idx].pop(frame_idx, None)
        return self._prompted_frame(state, obj_idx, frame_idx, None, mask_inputs)

    def _prompted_frame(self, state: InferenceState, obj_idx: int, frame_idx: int,
                        point_inputs: dict[str, torch.Tensor] | None,
                        mask_inputs: torch.Tensor | None) -> tuple[int, list[Any], torch.Tensor]:
        """Decode a newly prompted frame for one object (its memory is encoded when propagation starts)."""
        tracked = state["frames_tracked_per_obj"][obj_idx]
        # An untracked frame is decoded like an image (a new conditioning frame); a tracked one is corrected
        # with the memory, in the direction it was tracked.
        is_init_cond_frame = frame_idx not in tracked
        reverse = False if is_init_cond_frame else tracked[frame_idx]["reverse"]
        is_cond = is_init_cond_frame or self.add_all_frames_to_correct_as_cond
        outputs, temp = state["output_dict_per_obj"][obj_idx], state["temp_output_dict_per_obj"][obj_idx]
        prev_logits = None
        if point_inputs is not None:
            storage_key = COND if is_cond else NON_COND
            previous = temp[storage_key].get(frame_idx) or outputs[COND].get(frame_idx) or \
                outputs[NON_COND].get(frame_idx)
            if previous is not None:
                prev_logits = previous.pred_masks.to(state["device"]).clamp(-PREV_LOGIT_LIMIT, PREV_LOGIT_LIMIT)
        output, _ = self._track_frame(state, obj_idx, frame_idx, is_init_cond_frame, point_inputs, mask_inputs,
                                      reverse, run_mem_encoder=False, prev_sam_mask_logits=prev_logits)
        temp[COND if is_cond else NON_COND][frame_idx] = output
        masks = self._consolidated_video_masks(state, frame_idx, is_cond)
        return frame_idx, state["obj_ids"], masks

    # ------------------------------------------------------------------------------------------ propagation

    @torch.inference_mode()
    def propagate_in_video_preflight(self, inference_state: InferenceState) -> None:
        """Encode the memories of newly prompted frames and move them into the tracking outputs
        (``propagate_in_video`` calls it first).

        Args:
            inference_state (dict): The state from ``init_state``.

        Raises:
            RuntimeError: If no object has a prompt, or some object has none.
        """
        state = inference_state
        if not state["obj_ids"]:
            raise RuntimeError("No input points or masks are provided for any object; please add inputs first.")
        for obj_idx in range(len(state["obj_ids"])):
            outputs, temp = state["output_dict_per_obj"][obj_idx], state["temp_output_dict_per_obj"][obj_idx]
            for storage_key in (NON_COND, COND):
                for frame_idx, out in temp[storage_key].items():
                    if out.maskmem_features is None:
                        high_res = F.interpolate(out.pred_masks.to(state["device"]), size=(self.image_size,) * 2,
                                                 mode="bilinear", align_corners=False)
                        # Prompted frames: their masks are what the user saw (binarised for memory).
                        out.maskmem_features = self._encode_memory(state, frame_idx, high_res,
                                                                   out.object_score_logits, is_mask_from_pts=True)
                    outputs[storage_key][frame_idx] = out
                    if self.clear_non_cond_mem_around_input:
                        self._clear_non_cond_mem_around_input(state, frame_idx)
                temp[storage_key].clear()
            if not outputs[COND]:
                raise RuntimeError(f"No input points or masks are provided for object id "
                                   f"{state['obj_idx_to_id'][obj_idx]}; please add inputs first.")
            for frame_idx in outputs[COND]:
                outputs[NON_COND].pop(frame_idx, None)

    @torch.inference_mode()
    def propagate_in_video(self, inference_state: InferenceState, start_frame_idx: int | None = None,
                           max_frame_num_to_track: int | None = None, reverse: bool = False,
                           ) -> Iterator[tuple[int, list[Any], torch.Tensor]]:
        """Track every object through the video, frame by frame.

        Args:
            inference_state (dict): The state from ``init_state``, with prompts added.
            start_frame_idx (int or None): The first frame; None (default): the first prompted frame.
            max_frame_num_to_track (int or None): How many frames to track after the first; None (default): to
                the end (or to frame 0 with ``reverse``).
            reverse (bool): Track backwards, towards frame 0 (nothing is tracked backwards from frame 0).

        Yields:
            (tuple): (frame_idx (int), obj_ids (list), masks (torch.Tensor)) for each frame in tracking order;
                masks are every object's mask logits, (objects, 1, H, W) in the model's dtype (float32 for the
                released models) at the video's resolution on the model's device (> 0 is the mask).

        Raises:
            RuntimeError: If no object has a prompt, or some object has none.
            ValueError: If ``start_frame_idx`` is outside the video.
        """
        state = inference_state
        self.propagate_in_video_preflight(state)
        num_frames, num_objects = state["num_frames"], len(state["obj_ids"])
        if start_frame_idx is None:
            start_frame_idx = min(t for outputs in state["output_dict_per_obj"].values() for t in outputs[COND])
        self._check_frame(state, start_frame_idx)
        if max_frame_num_to_track is None:
            max_frame_num_to_track = num_frames
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame_idx in order:
            masks = []
            for obj_idx in range(num_objects):
                outputs = state["output_dict_per_obj"][obj_idx]
                if frame_idx in outputs[COND]:
                    pred_masks = outputs[COND][frame_idx].pred_masks.to(state["device"])
                    if self.clear_non_cond_mem_around_input:
                        self._clear_non_cond_mem_around_input(state, frame_idx)
                else:
                    output, pred_masks = self._track_frame(state, obj_idx, frame_idx, False, None, None, reverse,
                                                           run_mem_encoder=True)
                    outputs[NON_COND][frame_idx] = output
                    self._forget_unreachable(outputs, frame_idx, reverse)
                state["frames_tracked_per_obj"][obj_idx][frame_idx] = {"reverse": reverse}
                masks.append(pred_masks)
            yield frame_idx, state["obj_ids"], self._video_resolution(state, torch.cat(masks))

    def _forget_unreachable(self, outputs: dict[str, dict[int, FrameOutput]], frame_idx: int, reverse: bool) -> None:
        """Drop the non-conditioning outputs behind ``frame_idx`` (in the tracking direction) that neither
        it, nor the frames after it, nor a propagation from a prompted frame can read any more."""
        reach = self.reach
        behind = [t for t in outputs[NON_COND] if (t - frame_idx if reverse else frame_idx - t) > reach]
        for t in behind:
            if all(abs(t - cond) > reach for cond in outputs[COND]):
                del outputs[NON_COND][t]

    # ------------------------------------------------------------------------------------------- edits

    @torch.inference_mode()
    def clear_all_prompts_in_frame(self, inference_state: InferenceState, frame_idx: int, obj_id: Any,
                                   need_output: bool = True) -> tuple[int, list[Any], torch.Tensor] | None:
        """Remove one object's prompts on one frame (the frame becomes a plain tracked frame).

        Args:
            inference_state (dict): The state from ``init_state``.
            frame_idx (int): The frame.
            obj_id (hashable): The object (an unknown id is added as a new object, as in Meta's code).
            need_output (bool): Return the frame's masks afterwards (default True).

        Returns:
            (tuple or None): As :meth:`add_new_points_or_box`, (frame_idx, obj_ids, masks); None if not
                ``need_output``.
        """
        state = inference_state
        obj_idx = self._obj_id_to_idx(state, obj_id)
        state["point_inputs_per_obj"][obj_idx].pop(frame_idx, None)
        state["mask_inputs_per_obj"][obj_idx].pop(frame_idx, None)
        temp = state["temp_output_dict_per_obj"]
        temp[obj_idx][COND].pop(frame_idx, None)
        temp[obj_idx][NON_COND].pop(frame_idx, None)
        outputs = state["output_dict_per_obj"][obj_idx]
        out = outputs[COND].pop(frame_idx, None)
        if out is not None:
            outputs[NON_COND][frame_idx] = out
            state["frames_tracked_per_obj"][obj_idx].pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in t[COND] for t in temp.values())
        return frame_idx, state["obj_ids"], self._consolidated_video_masks(state, frame_idx, is_cond)

    @torch.inference_mode()
    def reset_state(self, inference_state: InferenceState) -> None:
        """Remove every object, prompt and tracking output from the state (the video stays loaded).

        Args:
            inference_state (dict): The state from ``init_state``.
        """
        state = inference_state
        for key in ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj",
                    "temp_output_dict_per_obj", "frames_tracked_per_obj", "obj_id_to_idx", "obj_idx_to_id"):
            state[key].clear()
        state["obj_ids"].clear()

    @torch.inference_mode()
    def remove_object(self, inference_state: InferenceState, obj_id: Any, strict: bool = False,
                      need_output: bool = True) -> tuple[list[Any], list[tuple[int, torch.Tensor]]]:
        """Remove one object and its prompts.

        Args:
            inference_state (dict): The state from ``init_state``.
            obj_id (hashable): The object to remove.
            strict (bool): Raise if the object does not exist (default False: do nothing).
            need_output (bool): Return the masks of the frames it was prompted on (default True).

        Returns:
            (list): The remaining object ids.
            (list of tuple): (frame_idx, masks) for each frame the object was prompted on, the remaining
                objects' masks there as in :meth:`add_new_points_or_box`; empty if not ``need_output``, or when
                the last object was removed.

        Raises:
            RuntimeError: If ``strict`` and the object does not exist.
        """
        state = inference_state
        old_idx = state["obj_id_to_idx"].get(obj_id)
        if old_idx is None:
            if not strict:
                return state["obj_ids"], []
            raise RuntimeError(f"Cannot remove object id {obj_id} as it doesn't exist. "
                               f"All existing object ids: {state['obj_ids']}.")
        if len(state["obj_id_to_idx"]) == 1:
            self.reset_state(state)
            return state["obj_ids"], []
        prompted = set(state["point_inputs_per_obj"][old_idx]) | set(state["mask_inputs_per_obj"][old_idx])
        for frame_idx in prompted:
            self.clear_all_prompts_in_frame(state, frame_idx, obj_id, need_output=False)
        kept = [idx for idx in range(len(state["obj_ids"])) if idx != old_idx]
        new_ids = [state["obj_ids"][idx] for idx in kept]
        state["obj_id_to_idx"] = OrderedDict((obj, i) for i, obj in enumerate(new_ids))
        state["obj_idx_to_id"] = OrderedDict(enumerate(new_ids))
        state["obj_ids"] = new_ids
        for key in ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj",
                    "temp_output_dict_per_obj", "frames_tracked_per_obj"):
            state[key] = {new: state[key][old] for new, old in enumerate(kept)}
        updated = []
        if need_output:
            temp = state["temp_output_dict_per_obj"]
            for frame_idx in prompted:
                is_cond = any(frame_idx in t[COND] for t in temp.values())
                updated.append((frame_idx, self._consolidated_video_masks(state, frame_idx, is_cond)))
        return state["obj_ids"], updated

    def _clear_non_cond_mem_around_input(self, state: InferenceState, frame_idx: int) -> None:
        span = self.config.memory_temporal_stride_for_eval * self.config.num_maskmem
        for outputs in state["output_dict_per_obj"].values():
            for t in range(frame_idx - span, frame_idx + span + 1):
                outputs[NON_COND].pop(t, None)

    # ------------------------------------------------------------------------------------------- internals

    def _frame_features(self, state: InferenceState, frame_idx: int) -> FrameFeatures:
        """The frame's features, computed once for the most recently visited frame."""
        cached = state["cached_features"].get(frame_idx)
        if cached is None:
            image = state["images"][frame_idx].to(state["device"], self.model.dtype).unsqueeze(0)
            cached = self.model.encode_frame(image)
            state["cached_features"] = {frame_idx: cached}
        return cached

    def _track_frame(self, state: InferenceState, obj_idx: int, frame_idx: int, is_init_cond_frame: bool,
                     point_inputs: dict[str, torch.Tensor] | None, mask_inputs: torch.Tensor | None, reverse: bool,
                     run_mem_encoder: bool, prev_sam_mask_logits: torch.Tensor | None = None,
                     ) -> tuple[FrameOutput, torch.Tensor]:
        """One object's tracking step on one frame -> (its stored output, its mask logits after hole filling)."""
        outputs = state["output_dict_per_obj"][obj_idx]
        output, _ = self.model.track_step(
            frame_idx, is_init_cond_frame, self._frame_features(state, frame_idx), point_inputs, mask_inputs,
            outputs[COND], outputs[NON_COND], state["num_frames"], reverse, run_mem_encoder, prev_sam_mask_logits,
            binarize_mask_from_pts=self.binarize_mask_from_pts_for_mem_enc)
        pred_masks = output.pred_masks
        if self.fill_hole_area > 0:
            pred_masks = fill_small_holes(pred_masks, self.fill_hole_area)
        storage = state["storage_device"]
        memory = output.maskmem_features
        # Memories are stored in bfloat16 (read back in float32), as Meta's predictor does.
        stored = FrameOutput(pred_masks.to(storage), output.obj_ptr, output.object_score_logits,
                             None if memory is None else memory.to(torch.bfloat16).to(storage))
        return stored, pred_masks

    def _encode_memory(self, state: InferenceState, frame_idx: int, high_res_masks: torch.Tensor,
                       object_score_logits: torch.Tensor, is_mask_from_pts: bool) -> torch.Tensor:
        features = self._frame_features(state, frame_idx)
        memory = self.model.encode_memory(features.vision, high_res_masks, object_score_logits,
                                          binarize=self.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts)
        return memory.to(torch.bfloat16).to(state["storage_device"])

    def _consolidated_video_masks(self, state: InferenceState, frame_idx: int, is_cond: bool) -> torch.Tensor:
        """Every object's latest mask logits on a frame at video resolution (objects, 1, H, W); NO_OBJ_SCORE
        for objects without an output there."""
        storage_key = COND if is_cond else NON_COND
        height, width = state["video_height"], state["video_width"]
        num_objects = len(state["obj_ids"])
        masks = torch.full((num_objects, 1, height, width), NO_OBJ_SCORE, dtype=torch.float32,
                           device=state["storage_device"])
        for obj_idx in range(num_objects):
            outputs = state["output_dict_per_obj"][obj_idx]
            out = (state["temp_output_dict_per_obj"][obj_idx][storage_key].get(frame_idx)
                   or outputs[COND].get(frame_idx) or outputs[NON_COND].get(frame_idx))
            if out is not None:
                masks[obj_idx: obj_idx + 1] = F.interpolate(out.pred_masks, size=(height, width), mode="bilinear",
                                                            align_corners=False)
        return self._video_resolution(state, masks)

    def _video_resolution(self, state: InferenceState, masks: torch.Tensor) -> torch.Tensor:
        """Mask logits (objects, 1, h, w) resized to the video's size, overlaps removed if asked for."""
        masks = masks.to(state["device"])
        size = (state["video_height"], state["video_width"])
        if tuple(masks.shape[-2:]) != size:
            masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        return keep_highest_object(masks) if self.non_overlap_masks else masks

"""Benchmark sam_core's EdgeTAM against Meta's EdgeTAM code and transformers' EdgeTamModel / EdgeTamVideoModel on
identical random weights.

    .venv/bin/python benchmarks/edgetam_bench.py [--image photo.jpg] [--tasks encoder predict amg16_all video]
    .venv/bin/python benchmarks/edgetam_bench.py --tiny --runs 1     # a smoke run on the small test model

As ``bench.py``: one set of random weights (every tensor random; the object-score head says "present"), written
as transformers' EdgeTamVideoModel folder (sam_core reads it) and as Meta's ``edgetam.pt`` (sam_core writes it);
each (task, implementation) pair in fresh subprocesses (peak RSS per pair), repeats interleaved, medians printed.
Rows: ``encoder`` (one 1024x1024 image), ``predict`` (one click on an encoded image, 20 calls), ``amg16_all``
(segment everything, 16x16 points, quality filters off so that masks survive; sam_core's masks are compared with
Meta's), ``video`` (a click on frame 0 of a 1024x1024 clip, then tracking: frames per second of the propagation).
Meta's code (``edgetam-dimos``, whose package is also named ``sam2``) is read from ``.refs/edgetam`` (or
``SAM_CORE_EDGETAM_REF``); its rows are left out when it is not installed. Its video predictor runs without hole
filling (a CUDA extension), and so do the others. transformers' video rows feed sam_core's preprocessed frames.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench import PREDICT_CALLS, amg_options, load_rgb, measure, print_header, timed, worker_parser, write_result

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("encoder", "predict", "amg16_all", "video")
VIDEO_FRAMES = 8


def reference_dir() -> Path:
    return Path(os.environ.get("SAM_CORE_EDGETAM_REF", ROOT / ".refs" / "edgetam"))


def bench_config(tiny: bool) -> Any:
    from sam_core.models.edgetam import EDGETAM_CONFIGS

    if not tiny:
        return EDGETAM_CONFIGS["edgetam"]
    # transformers' video model fixes mem_dim at 64 and always projects the memory: the test model widened.
    return dataclasses.replace(EDGETAM_CONFIGS["edgetam_test"], d_model=128, mem_dim=64, perceiver_dim_head=32)


def make_weights(directory: Path, tiny: bool) -> Path:
    """transformers' random EdgeTamVideoModel folder, sam_core's reading of it in Meta's layout beside it."""
    import sam_core
    from sam_core.models.edgetam.parity import make_hf_edgetam_video
    from sam_core.models.edgetam.video import EdgeTamVideo

    folder = directory / "hf-edgetam-video"
    make_hf_edgetam_video(bench_config(tiny)).save_pretrained(folder)
    loaded = sam_core.load_checkpoint(folder)
    video = EdgeTamVideo.from_image_model(loaded.model, loaded.extras)
    sam_core.io.checkpoints.save_meta_checkpoint(video, directory / "edgetam.pt")
    return folder


def draw_clip(folder: Path, size: int) -> Path:
    """A bright square moving right over smooth noise, as <index>.jpg frames of size x size."""
    from PIL import Image

    rng = np.random.default_rng(0)
    background = np.asarray(Image.fromarray(rng.integers(40, 140, (size // 32, size // 32, 3), dtype=np.uint8))
                            .resize((size, size), Image.Resampling.BILINEAR))
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(VIDEO_FRAMES):
        frame = background.copy()
        x0 = size // 8 + index * size // 32
        frame[size // 4: size // 2, x0: x0 + size // 4] = (230, 60, 40)
        Image.fromarray(frame).save(folder / f"{index:05d}.jpg", quality=95)
    return folder


def meta_model(weights: Path, video: bool) -> Any:
    """Meta's model (a SAM2VideoPredictor when ``video``) with the weights of ``edgetam.pt`` beside ``weights``."""
    sys.path.insert(0, str(reference_dir()))  # before anything imports SAM 2's own ``sam2``
    sys.path.insert(0, str(ROOT / "tests" / "models" / "edgetam"))
    import meta_edgetam  # the parity tests' builder of Meta's model from a config's shapes

    import sam_core

    model = meta_edgetam.build(sam_core.load_sam(weights).config.to_dict(), seed=0, video=video)
    model.load_state_dict(torch.load(weights.parent / "edgetam.pt")["model"])
    return model.eval()


def fit_feature_sizes(predictor: Any) -> Any:
    """Meta's SAM2ImagePredictor with the feature sizes of its model's input (it assumes 1024 pixels)."""
    side = predictor.model.image_size
    predictor._bb_feat_sizes = [(side // 4, side // 4), (side // 8, side // 8), (side // 16, side // 16)]
    return predictor


def hf_image_model(weights: Path) -> Any:
    """transformers' EdgeTamModel with the image part of the EdgeTamVideoModel folder."""
    from transformers import EdgeTamConfig, EdgeTamModel, EdgeTamVideoModel

    video = EdgeTamVideoModel.from_pretrained(weights)
    parts = video.config
    config = EdgeTamConfig(vision_config=parts.vision_config, prompt_encoder_config=parts.prompt_encoder_config,
                           mask_decoder_config=parts.mask_decoder_config)
    model = EdgeTamModel(config)
    missing = model.load_state_dict(video.state_dict(), strict=False).missing_keys
    if missing:
        raise RuntimeError(f"the video folder lacks image tensors: {missing[:5]}")
    return model.eval()


def worker(task: str, implementation: str, weights: Path, image_path: str, runs: int, out: Path) -> None:
    torch.set_grad_enabled(False)
    model = meta_model(weights, video=task == "video") if implementation == "reference" else None
    import sam_core
    from sam_core.runtime import keep_freed_memory_by_default

    if implementation == "sam_core":
        keep_freed_memory_by_default()  # what sam-amg does first
    ours = sam_core.load_sam(weights)
    image = load_rgb(image_path)
    point, label = np.array([[image.shape[1] * 0.45, image.shape[0] * 0.55]]), np.array([1])
    masks = None
    if task == "encoder":
        prepared = ours.preprocess(torch.from_numpy(image).permute(2, 0, 1)[None])
        if implementation == "sam_core":
            times, _ = timed(lambda: ours.encode(prepared), runs)
        elif implementation == "transformers":
            hf = hf_image_model(weights)
            times, _ = timed(lambda: hf.get_image_embeddings(prepared), runs)
        else:
            times, _ = timed(lambda: model.forward_image(prepared), runs)
    elif task == "predict":
        times = predict_times(implementation, ours, model, weights, image, point, label)
    elif task == "amg16_all":  # transformers has no mask generator of its own for EdgeTAM
        options = amg_options(task)
        if implementation == "sam_core":
            generator = sam_core.AutomaticMaskGenerator(ours, **options)
        else:
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

            generator = SAM2AutomaticMaskGenerator(model, **options)
            fit_feature_sizes(generator.predictor)
        start = time.perf_counter()
        records = generator.generate(image)
        times, masks = [time.perf_counter() - start], [record["segmentation"] for record in records]
    else:
        times = video_times(implementation, ours, model, weights, out.parent)
    write_result(out, times, masks)


def predict_times(implementation: str, ours: Any, model: Any, weights: Path, image: np.ndarray, point: np.ndarray,
                  label: np.ndarray) -> list[float]:
    import sam_core

    if implementation == "transformers":
        hf = hf_image_model(weights)
        pixels = ours.preprocess(torch.from_numpy(image).permute(2, 0, 1)[None])
        embeddings = hf.get_image_embeddings(pixels)
        scale = torch.tensor([ours.image_size / image.shape[1], ours.image_size / image.shape[0]])
        points = (torch.from_numpy(point).float() * scale)[None, None]
        labels = torch.from_numpy(label)[None, None]

        def call() -> Any:
            out = hf(image_embeddings=embeddings, input_points=points, input_labels=labels)
            return torch.nn.functional.interpolate(out.pred_masks[0], size=image.shape[:2], mode="bilinear") > 0
    else:
        if implementation == "sam_core":
            predictor = sam_core.Predictor(ours)
        else:
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            predictor = fit_feature_sizes(SAM2ImagePredictor(model))
        predictor.set_image(image)

        def call() -> Any:
            return predictor.predict(point_coords=point, point_labels=label)
    return timed(call, PREDICT_CALLS)[0]


def video_times(implementation: str, ours: Any, model: Any, weights: Path, tmp: Path) -> list[float]:
    """Seconds per tracked frame of one propagation after a click on frame 0 (the prompt's frame excluded)."""
    import sam_core
    from sam_core.models.edgetam.video import EdgeTamVideo

    clip = draw_clip(tmp / f"clip{ours.image_size}", ours.image_size)
    click = [[ours.image_size * 0.3, ours.image_size * 0.35]]
    if implementation == "transformers":
        import transformers

        from sam_core.io.video_frames import VideoFrames
        from sam_core.models.sam2.model import PIXEL_MEAN, PIXEL_STD

        hf = transformers.EdgeTamVideoModel.from_pretrained(weights).eval()
        reader = VideoFrames(clip, ours.image_size, PIXEL_MEAN, PIXEL_STD)
        frames = torch.stack([reader[index] for index in range(len(reader))])
        size = {"height": ours.image_size, "width": ours.image_size}
        processor = transformers.Sam2VideoProcessor(transformers.Sam2ImageProcessor(size=size),
                                                    transformers.Sam2VideoVideoProcessor(size=size),
                                                    target_size=ours.image_size)
        session = transformers.EdgeTamVideoInferenceSession(video=frames, video_height=ours.image_size,
                                                            video_width=ours.image_size, dtype=torch.float32)
        processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=1, input_points=[[click]],
                                                  input_labels=[[[1]]])
        hf(inference_session=session, frame_idx=0)
        start = time.perf_counter()
        count = sum(1 for _ in hf.propagate_in_video_iterator(session, start_frame_idx=0))
        return [(time.perf_counter() - start) / count]
    if implementation == "sam_core":
        loaded = sam_core.load_checkpoint(weights)
        predictor = sam_core.VideoPredictor(EdgeTamVideo.from_image_model(loaded.model, loaded.extras),
                                            fill_hole_area=0)
    else:
        predictor = model
    state = predictor.init_state(str(clip))
    predictor.add_new_points_or_box(state, 0, 1, points=click, labels=[1])
    start = time.perf_counter()
    count = sum(1 for _ in predictor.propagate_in_video(state))
    return [(time.perf_counter() - start) / count]


def main() -> None:
    parser = worker_parser(__doc__.splitlines()[0], ("TASK", "IMPL"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--tiny", action="store_true", help="the small test model at 256 pixels (a smoke run)")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.weights, args.image, args.runs, args.out)
        return
    size = "test model (tiny)" if args.tiny else "edgetam (RepViT-M1)"
    print_header(f"sam_core benchmark: EdgeTAM {size} fp32, random weights; video rows: seconds per frame",
                 args.image, args.runs)
    implementations = ["reference", "transformers", "sam_core"]
    if not (reference_dir() / "sam2").is_dir():
        print(f"# Meta's EdgeTAM is not installed at {reference_dir()}: its rows are left out")
        implementations.remove("reference")
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_weights(Path(tmp), args.tiny)
        for task in args.tasks:
            measured = [name for name in implementations if name != "transformers" or task != "amg16_all"]
            measure(__file__, task, measured, weights, args.image, args.runs, Path(tmp))


if __name__ == "__main__":
    main()

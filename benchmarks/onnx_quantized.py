"""The int8 decoder graph against the exact one: mask IoU (logits > 0) on the shapes scenes, one foreground click
inside each drawn shape and its bounding box, all four outputs; and the run time of each graph per prompt.

    python benchmarks/onnx_quantized.py [--model weights/sam_vit_tiny_shapes.safetensors]
    python benchmarks/onnx_quantized.py --model weights/sam2_hiera_test_shapes.safetensors   # SAM 2's graph
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import sam_core
from sam_core.io.onnx_export import decoder_inputs, export_onnx
from sam_core.jobs.samples import shapes_scenes
from sam_core.models.sam2.model import Sam2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "weights"
                                               / "sam_vit_tiny_shapes.safetensors"))
    args = parser.parse_args()
    sam = sam_core.load_sam(args.model)
    with tempfile.TemporaryDirectory() as folder:
        files = export_onnx(sam, Path(folder) / "decoder.onnx", quantize=True)
        exact, int8 = (ort.InferenceSession(str(path)) for path in (files.decoder, files.quantized_decoder))
        sizes = files.decoder.stat().st_size, files.quantized_decoder.stat().st_size
        predictor = sam_core.Predictor(sam)
        ious, best_ious, times = [], [], {"exact": [], "int8": []}
        for scene in shapes_scenes():
            predictor.set_image(scene.image)
            features = predictor.features_by_name if isinstance(sam, Sam2) else predictor.get_image_embedding()
            for shape in scene.masks:
                rows, cols = np.nonzero(shape)
                inside = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)  # nearest the centroid
                prompts = [dict(point_coords=np.array([[cols[inside], rows[inside]]]), point_labels=np.array([1])),
                           dict(box=np.array([cols.min(), rows.min(), cols.max(), rows.max()]))]
                for prompt in prompts:
                    feed = decoder_inputs(sam, features, scene.image.shape[:2], **prompt)
                    outputs, scores = {}, None
                    for name, session in (("exact", exact), ("int8", int8)):
                        start = time.perf_counter()
                        masks, predicted = session.run(None, feed)[:2]
                        times[name].append(time.perf_counter() - start)
                        outputs[name] = masks[0] > 0
                        scores = predicted[0] if name == "exact" else scores
                    pair_ious = [_iou(a, b) for a, b in zip(outputs["exact"], outputs["int8"])]
                    ious += pair_ious
                    best_ious.append(pair_ious[1 + int(np.argmax(scores[1:]))])  # the mask a click shows
    ious, best_ious = np.array(ious), np.array(best_ious)
    print(f"model {args.model}: {len(ious)} masks ({len(ious) // 4} prompts x 4 outputs)")
    print(f"int8 vs exact mask IoU: mean {ious.mean():.4f}, median {np.median(ious):.4f}, min {ious.min():.4f}, "
          f"share >= 0.95: {(ious >= 0.95).mean():.3f}")
    print(f"the best-scored multimask output only: mean {best_ious.mean():.4f}, median {np.median(best_ious):.4f}, "
          f"min {best_ious.min():.4f}")
    print(f"graph size: exact {sizes[0] / 1e6:.2f} MB, int8 {sizes[1] / 1e6:.2f} MB")
    for name, values in times.items():
        print(f"onnxruntime {name}: median {1000 * np.median(values):.2f} ms per prompt")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


if __name__ == "__main__":
    main()

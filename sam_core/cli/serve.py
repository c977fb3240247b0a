"""``sam-serve``: the click-to-segment web app on this machine."""

from __future__ import annotations

import argparse
import sys

from sam_core.io.checkpoints import CheckpointError, load_sam, model_type_name
from sam_core.serve.images import ImageFolder, ImageLimits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sam-serve", description="Click-to-segment in the browser: open an image, click or drag a box, "
                                      "see the mask. Binds 127.0.0.1 unless told otherwise.")
    parser.add_argument("--model", required=True,
                        help="registry name (vit_b, sam2.1_hiera_tiny, ...), checkpoint file or Hugging Face id")
    parser.add_argument("--images", help="a folder whose images the page can open by name")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; the app has no login)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    parser.add_argument("--max-upload-mb", type=float, default=32.0, help="largest image file accepted")
    parser.add_argument("--max-megapixels", type=float, default=40.0, help="largest image accepted, in pixels")
    parser.add_argument("--points-per-side", type=int, default=32, help='"segment everything" grid')
    parser.add_argument("--pred-iou-thresh", type=float, default=None,
                        help='"segment everything" filter (default: the model family\'s)')
    parser.add_argument("--stability-score-thresh", type=float, default=None,
                        help='"segment everything" filter (default: the model family\'s)')
    args = parser.parse_args(argv)

    # Imported here: the serve extra: only sam-serve needs it.
    import uvicorn

    # Imported here: it imports fastapi, the serve extra: only sam-serve needs it.
    from sam_core.serve.app import create_app

    try:
        model = load_sam(args.model, device=args.device)
        folder = ImageFolder(args.images) if args.images else None
    except (CheckpointError, ValueError, OSError) as error:
        print(f"sam-serve: error: {error}", file=sys.stderr)
        return 1
    limits = ImageLimits(max_bytes=int(args.max_upload_mb * 1024 * 1024),
                         max_pixels=int(args.max_megapixels * 1_000_000))
    options = {"points_per_side": args.points_per_side, "pred_iou_thresh": args.pred_iou_thresh,
               "stability_score_thresh": args.stability_score_thresh}
    app = create_app(model, f"{args.model} ({model_type_name(model.config)})", folder, limits, options)
    print(f"sam-serve: open http://{args.host}:{args.port}/ in a browser", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())

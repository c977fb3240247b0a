"""``sam-serve``: the click-to-segment web app on this machine."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import quote

from sam_core.io.checkpoints import CheckpointError, load_sam, model_type_name
from sam_core.serve.images import ImageFolder, ImageLimits
from sam_core.serve.security import ALL_INTERFACES, LOCAL_NAMES, Access, new_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sam-serve", description="Click-to-segment in the browser: open an image, click or drag a box, "
                                      "see the mask. Binds 127.0.0.1 unless told otherwise.")
    parser.add_argument("--model", required=True,
                        help="registry name (vit_b, sam2.1_hiera_tiny, ...), checkpoint file or Hugging Face id")
    parser.add_argument("--images", help="a folder whose images the page can open by name")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; the app has no login: "
                             "with another address, set --token)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a host name the browser may use for this server besides its address and localhost "
                             "(e.g. behind a proxy); repeatable; '*' allows any (no DNS-rebinding protection)")
    parser.add_argument("--token", default=None,
                        help="a secret every request needs: the page opens at /?token=TOKEN, API calls send it in "
                             "X-Sam-Serve-Token (default: a random token, given to whoever can load the page)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    parser.add_argument("--max-upload-mb", type=float, default=32.0, help="largest image file accepted")
    parser.add_argument("--max-megapixels", type=float, default=40.0, help="largest image accepted, in pixels")
    parser.add_argument("--points-per-side", type=int, default=32, help='"segment everything" grid')
    parser.add_argument("--pred-iou-thresh", type=float, default=None,
                        help='"segment everything" filter (default: the model family\'s)')
    parser.add_argument("--stability-score-thresh", type=float, default=None,
                        help='"segment everything" filter (default: the model family\'s)')
    parser.add_argument("--kept-images", type=int, default=8, help="encoded images kept for prompting "
                        "(each holds its features and file: docs/serve.md gives the MB per family)")
    parser.add_argument("--max-encodes", type=int, default=2,
                        help="images being opened at once (one encodes, the others wait); more get 503")
    parser.add_argument("--max-everything", type=int, default=2,
                        help='"segment everything" requests at once (one runs, the others wait); more get 503')
    parser.add_argument("--max-predicts", type=int, default=32,
                        help="clicks at once (one decodes, the others wait); more get 503")
    args = parser.parse_args(argv)
    for option in ("kept_images", "max_encodes", "max_everything", "max_predicts"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")

    # Imported here: the serve extra: only sam-serve needs it.
    import uvicorn

    # Imported here: it imports fastapi, the serve extra: only sam-serve needs it.
    from sam_core.serve.app import ServeLimits, create_app

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
    access = Access(token=args.token or new_token(), bound_host=args.host, allowed_hosts=tuple(args.allow_host),
                    page_needs_token=args.token is not None)
    bounds = ServeLimits(kept_images=args.kept_images, encodes=args.max_encodes, everything=args.max_everything,
                         predicts=args.max_predicts)
    app = create_app(model, f"{args.model} ({model_type_name(model.config)})", folder, limits, options, access,
                     bounds)
    if args.host not in LOCAL_NAMES and args.token is None:
        reach = "any machine that can reach this one" if args.host in ALL_INTERFACES else f"anyone reaching {args.host}"
        print(f"sam-serve: warning: bound to {args.host}: the app has no login, so {reach} can use it"
              f"{' and open the files of --images' if folder else ''}; set --token to require a secret",
              file=sys.stderr, flush=True)
    shown = "localhost" if args.host in ALL_INTERFACES else args.host
    query = f"?token={quote(args.token)}" if args.token is not None else ""
    print(f"sam-serve: open http://{shown}:{args.port}/{query} in a browser", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())

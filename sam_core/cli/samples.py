"""``sam-samples FOLDER``: write the sample images (``sam_core.jobs.samples``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam_core.jobs.samples import MissingPhotosDependency, write_samples


def main(argv: list[str] | None = None) -> int:
    """``sam-samples FOLDER [--photos] [--overwrite]``: write the sample images; exit status 1 on an error.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="sam-samples", description="Write sample images to try sam-amg on: synthetic shapes scenes that "
                                        "weights/sam_vit_tiny_shapes.safetensors segments, and optionally photos.")
    parser.add_argument("folder", type=Path, help="output folder (created if needed)")
    parser.add_argument("--photos", action="store_true",
                        help="also write scikit-image's sample photos (pip install -e '.[examples]')")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files with other content")
    args = parser.parse_args(argv)
    try:
        paths = write_samples(args.folder, photos=args.photos, overwrite=args.overwrite)
    except (MissingPhotosDependency, FileExistsError, OSError) as error:
        print(f"sam-samples: error: {error}", file=sys.stderr)
        return 1
    print(f"sam-samples: {len(paths)} images in {args.folder}: {', '.join(path.name for path in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

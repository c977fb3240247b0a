"""sam-serve: a local click-to-segment web app (needs the ``serve`` extra: FastAPI and uvicorn)."""

from sam_core.serve.app import create_app
from sam_core.serve.images import ImageFolder, ImageLimits, ImageRejected, decode_image

__all__ = ["ImageFolder", "ImageLimits", "ImageRejected", "create_app", "decode_image"]

"""sam-serve: a local click-to-segment web app (needs the ``serve`` extra: FastAPI and uvicorn)."""

from sam_core.serve.app import ServeLimits, create_app
from sam_core.serve.images import ImageFolder, ImageLimits, ImageRejected, decode_image
from sam_core.serve.security import Access, page_token

__all__ = ["Access", "ImageFolder", "ImageLimits", "ImageRejected", "ServeLimits", "create_app", "decode_image",
           "page_token"]

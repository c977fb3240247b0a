"""The web app's server: one static page, and a JSON API (``/api/...``) over sam_core's Predictor and
AutomaticMaskGenerator; errors are ``{"error": "..."}`` with a 4xx status.

The API: docs/serve.md."""

from __future__ import annotations

import json
import queue
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import cv2
import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from sam_core.interface import PromptableSegmenter
from sam_core.io.files import png_bytes
from sam_core.pipelines.mask_generator import AutomaticMaskGenerator
from sam_core.pipelines.predictor import Predictor
from sam_core.serve.images import ImageFolder, ImageLimits, ImageRejected, decode_image
from sam_core.serve.masks_io import mask_to_runs, masks_coco_json, masks_png, runs_to_mask

KEPT_IMAGES = 4
"""Encoded images kept for prompting; opening another drops the oldest."""
MAX_JSON_BYTES = 64 * 1024 * 1024


@dataclass
class OpenImage:
    name: str
    rgb: np.ndarray
    predictor: Predictor


def create_app(model: PromptableSegmenter, model_name: str = "", folder: ImageFolder | None = None,
               limits: ImageLimits | None = None, generator_options: dict[str, Any] | None = None) -> FastAPI:
    """The ASGI app.

    Args:
        model: any family's model (``sam_core.load_sam``).
        model_name: what the page shows as the model.
        folder: images the page may open by name, if any.
        limits: upload size and pixel count limits.
        generator_options: ``AutomaticMaskGenerator`` options for "segment everything".
    """
    limits = limits or ImageLimits()
    generator = AutomaticMaskGenerator(model, **(generator_options or {}))
    images: OrderedDict[str, OpenImage] = OrderedDict()
    encode_lock = threading.Lock()  # one encoder run at a time: its progress hooks are on the shared model
    blocks = _encoder_blocks(model)
    app = FastAPI(title="sam_core", docs_url=None, redoc_url=None, openapi_url=None)
    static = resources.files("sam_core.serve") / "static"

    @app.exception_handler(ImageRejected)
    async def rejected(_: Request, error: ImageRejected) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/app.js")
    async def script() -> FileResponse:
        return FileResponse(str(static / "app.js"), media_type="text/javascript")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {"model": model_name, "max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                "folder_images": folder.names() if folder else []}

    @app.post("/api/images")
    async def open_image(request: Request, name: str = "", folder_name: str = "") -> StreamingResponse:
        if folder_name:
            if folder is None:
                raise ImageRejected("this server was started without --images: no folder to open from", 404)
            name, data = folder_name, await run_in_threadpool(folder.read, folder_name, limits)
        else:
            data = await _read_body(request, limits.max_bytes, name or "upload")
        rgb = await run_in_threadpool(decode_image, data, name or "upload", limits)
        return StreamingResponse(_encode_events(name, rgb), media_type="application/x-ndjson")

    def _encode_events(name: str, rgb: np.ndarray) -> Iterator[bytes]:
        events: queue.Queue[dict[str, Any]] = queue.Queue()

        def encode() -> None:
            try:
                predictor = Predictor(model)
                with encode_lock, _progress_hooks(blocks, events):
                    predictor.set_image(rgb)
                image_id = uuid.uuid4().hex
                images[image_id] = OpenImage(name, rgb, predictor)
                while len(images) > KEPT_IMAGES:
                    images.popitem(last=False)
                events.put({"image": {"id": image_id, "name": name, "width": rgb.shape[1], "height": rgb.shape[0]}})
            except Exception as error:  # the page shows it; the server stays up
                events.put({"error": f"{name}: could not encode the image ({error})"})

        threading.Thread(target=encode, daemon=True).start()
        while True:
            event = events.get()
            yield (json.dumps(event) + "\n").encode()
            if "image" in event or "error" in event:
                return

    def _open(image_id: str) -> OpenImage:
        if image_id not in images:
            raise ImageRejected("unknown or expired image; open it again", 404)
        images.move_to_end(image_id)
        return images[image_id]

    @app.get("/api/images/{image_id}/pixels")
    async def pixels(image_id: str) -> Response:
        image = _open(image_id)
        return Response(await run_in_threadpool(_png_bytes, image.rgb), media_type="image/png")

    @app.post("/api/images/{image_id}/predict")
    async def predict(image_id: str, request: Request) -> dict[str, Any]:
        image = _open(image_id)
        prompt = await _read_json(request)
        return await run_in_threadpool(_predict, image, prompt)

    @app.post("/api/images/{image_id}/everything")
    async def everything(image_id: str) -> dict[str, Any]:
        image = _open(image_id)
        records = await run_in_threadpool(generator.generate, image.rgb)
        records.sort(key=lambda record: -record["area"])
        return {"width": image.rgb.shape[1], "height": image.rgb.shape[0],
                "masks": [{"runs": mask_to_runs(r["segmentation"]), "score": r["predicted_iou"]} for r in records]}

    @app.post("/api/images/{image_id}/download")
    async def download(image_id: str, request: Request, format: str = "png") -> Response:
        image = _open(image_id)
        body = await _read_json(request)
        height, width = image.rgb.shape[:2]
        entries = body.get("masks") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError("download needs {\"masks\": [{\"runs\": [...], \"score\": s}, ...]}, at least one mask")
        masks = [runs_to_mask(entry.get("runs", []), height, width) for entry in entries]
        # The uploader chose the name: only safe characters go into the header.
        stem = re.sub(r"[^\w.-]", "_", image.name.rsplit(".", 1)[0]) or "image"
        if format == "png":
            data, media, suffix = masks_png(masks), "image/png", "png"
        elif format == "coco":
            scores = [float(entry.get("score", 0.0)) for entry in entries]
            data, media, suffix = masks_coco_json(masks, scores), "application/json", "json"
        else:
            raise ValueError(f"download format must be 'png' or 'coco', got {format!r}")
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="{stem}_masks.{suffix}"'})

    return app


def _predict(image: OpenImage, prompt: Any) -> dict[str, Any]:
    """``Predictor.predict`` on the page's prompt (coordinates in image pixels)."""
    if not isinstance(prompt, dict):
        raise ValueError("predict needs a JSON object with points, labels, box and multimask")
    points, labels, box = prompt.get("points") or None, prompt.get("labels") or None, prompt.get("box")
    masks, scores, _ = image.predictor.predict(
        point_coords=None if points is None else np.asarray(points, dtype=np.float64),
        point_labels=None if labels is None else np.asarray(labels),
        box=None if box is None else np.asarray(box, dtype=np.float64),
        multimask_output=bool(prompt.get("multimask", True)))
    return {"width": image.rgb.shape[1], "height": image.rgb.shape[0],
            "masks": [{"runs": mask_to_runs(mask), "score": float(score)} for mask, score in zip(masks, scores)]}


async def _read_body(request: Request, limit: int, name: str) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes (never held whole beyond it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ImageRejected(f"{name}: file of {declared} bytes is over the limit of {limit} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ImageRejected(f"{name}: file is over the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json(request: Request) -> Any:
    body = await _read_body(request, MAX_JSON_BYTES, "request")
    try:
        return json.loads(body)
    except ValueError:
        raise ValueError("the request body is not JSON") from None


def _png_bytes(rgb: np.ndarray) -> bytes:
    # Lossless, so that the page shows the very pixels the model saw; light compression: it is sent locally.
    return png_bytes(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), compression=1)


def _encoder_blocks(model: PromptableSegmenter) -> list[torch.nn.Module]:
    """The longest list of blocks in the model (the image encoder's transformer blocks; for a convolutional
    encoder without such a list, its longest sequence of stages, e.g. RepViT's ``features``): one step of
    progress each while an image is encoded."""
    lists = [module for name, module in model.named_modules()
             if isinstance(module, torch.nn.ModuleList) and name.endswith("blocks")]
    if not lists:
        lists = [module for name, module in model.named_modules()
                 if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)) and name.startswith("image_encoder")]
    return list(max(lists, key=len)) if lists else []


class _progress_hooks:
    """Report ``{"progress": done / total}`` to ``events`` after each encoder block runs."""

    def __init__(self, blocks: list[torch.nn.Module], events: queue.Queue) -> None:
        self.blocks, self.events, self.handles = blocks, events, []

    def __enter__(self) -> None:
        done = [0]

        def after_block(*_: Any) -> None:
            done[0] += 1
            self.events.put({"progress": round(done[0] / len(self.blocks), 3)})

        self.handles = [block.register_forward_hook(after_block) for block in self.blocks]

    def __exit__(self, *_: Any) -> None:
        for handle in self.handles:
            handle.remove()

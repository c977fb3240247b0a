"""The web app's server: one static page, and a JSON API (``/api/...``) over sam_core's Predictor and
AutomaticMaskGenerator; errors are ``{"error": "..."}`` with a 4xx status, or 503 with ``Retry-After`` when the
server is busy.

Memory stays bounded: each kind of heavy request passes a bounded queue (``ServeLimits``) that refuses the
excess before reading its body; an opened image is kept as its file bytes and its encoder features (a fixed
number of images), and decoded again only for the requests that need its pixels. Security (Host, origin,
token, headers): ``sam_core.serve.security``. The API and the limits: docs/serve.md."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from html import escape
from importlib import resources
from typing import Any

import cv2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from sam_core.interface import PromptableSegmenter
from sam_core.io.files import png_bytes
from sam_core.pipelines.mask_generator import AutomaticMaskGenerator
from sam_core.pipelines.masks import rle_to_mask
from sam_core.pipelines.predictor import Predictor
from sam_core.serve.admission import ServerBusy, WorkQueue
from sam_core.serve.encoding import EncoderProgress, EncodeStream, Report
from sam_core.serve.images import ImageFolder, ImageLimits, ImageRejected, decode_image, inspect_image
from sam_core.serve.masks_io import mask_to_runs, masks_coco_json, masks_png, runs_to_mask
from sam_core.serve.security import Access, AccessGuard, new_token

MAX_JSON_BYTES = 64 * 1024 * 1024
TOKEN_PLACEHOLDER = "{{sam_serve_token}}"


@dataclass(frozen=True)
class ServeLimits:
    """How much work the server takes on at once; a request beyond a bound is refused (503, ``Retry-After``)
    before its body is read.

    Args:
        kept_images: encoded images kept for prompting; opening another drops the least recently used.
        encodes: images being opened at once (one is encoded, the others wait with their file bytes).
        everything: "segment everything" requests at once (one runs, the others wait).
        predicts: clicks at once (``predicts_at_once`` run, the others wait).
        predicts_at_once: clicks decoded at the same time (on different images; one image's take turns). Each
            holds its masks and their float logits at the image's full size (0.5 GB at 35 megapixels).
        transfers: pixel and download requests at once (one runs).
    """

    kept_images: int = 8
    encodes: int = 2
    everything: int = 2
    predicts: int = 32
    predicts_at_once: int = 1
    transfers: int = 4


@dataclass
class OpenImage:
    name: str
    data: bytes  # the file: decoded again when its pixels are needed
    width: int
    height: int
    predictor: Predictor


def create_app(model: PromptableSegmenter, model_name: str = "", folder: ImageFolder | None = None,
               limits: ImageLimits | None = None, generator_options: dict[str, Any] | None = None,
               access: Access | None = None, serve_limits: ServeLimits | None = None) -> FastAPI:
    """The ASGI app.

    Args:
        model: any family's model (``sam_core.load_sam``). Progress hooks are added to its encoder blocks.
        model_name: what the page shows as the model.
        folder: images the page may open by name, if any.
        limits: upload size and pixel count limits.
        generator_options: ``AutomaticMaskGenerator`` options for "segment everything".
        access: who may use it (its token, host names); default: this machine only, a random token.
        serve_limits: how much work it takes on at once.

    Returns:
        The app; serve it on one event loop (uvicorn does).
    """
    limits = limits or ImageLimits()
    access = access or Access(token=new_token())
    bounds = serve_limits or ServeLimits()
    # Records as run lengths: a full-size boolean mask exists for one record at a time while it is answered.
    generator = AutomaticMaskGenerator(model, **{**(generator_options or {}), "output_mode": "uncompressed_rle"})
    images: OrderedDict[str, OpenImage] = OrderedDict()
    images_lock = threading.Lock()  # encode workers add images while requests look them up
    progress = EncoderProgress(model)
    queues = {
        "encodes": WorkQueue("images being opened", bounds.encodes, 1, "--max-encodes"),
        "everything": WorkQueue('"segment everything" requests', bounds.everything, 1, "--max-everything"),
        "predicts": WorkQueue("clicks being decoded or waiting", bounds.predicts, bounds.predicts_at_once,
                              "--max-predicts"),
        "transfers": WorkQueue("image or mask transfers", bounds.transfers, 1),
    }
    app = FastAPI(title="sam_core", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(AccessGuard, access=access)
    static = resources.files("sam_core.serve") / "static"
    page_html = (static / "index.html").read_text(encoding="utf-8").replace(TOKEN_PLACEHOLDER, escape(access.token))

    @app.exception_handler(ImageRejected)
    async def rejected(_: Request, error: ImageRejected) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(ServerBusy)
    async def busy(_: Request, error: ServerBusy) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html, headers={"Cache-Control": "no-store"})

    @app.get("/app.js")
    async def script() -> FileResponse:
        return FileResponse(str(static / "app.js"), media_type="text/javascript")

    @app.get("/app.css")
    async def style() -> FileResponse:
        return FileResponse(str(static / "app.css"), media_type="text/css")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {"model": model_name, "max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                "folder_images": folder.names() if folder else [], "kept_images": bounds.kept_images,
                "queues": {name: queue.status() for name, queue in queues.items()}}

    @app.post("/api/images")
    async def open_image(request: Request, name: str = "", folder_name: str = "") -> Response:
        label = folder_name or name or "upload"
        if folder_name and folder is None:
            raise ImageRejected("this server was started without --images: no folder to open from", 404)
        _check_declared_size(request, limits.max_bytes, label)
        ticket = queues["encodes"].admit()  # before the body is read: a refused upload costs nothing
        try:
            if folder_name:
                data = await run_in_threadpool(folder.read, folder_name, limits)
            else:
                data = await _read_body(request, limits.max_bytes, label)
            await run_in_threadpool(inspect_image, data, label, limits)
        except BaseException:
            ticket.release()
            raise

        def work(report: Report, cancelled: threading.Event) -> dict[str, Any]:
            with progress.reporting(report, cancelled):
                rgb = decode_image(data, label, limits)
                predictor = Predictor(model)
                predictor.set_image(rgb)
            height, width = rgb.shape[:2]
            del rgb  # kept as the file: decoded again only when its pixels are asked for
            image_id = uuid.uuid4().hex
            with images_lock:
                images[image_id] = OpenImage(label, data, width, height, predictor)
                while len(images) > bounds.kept_images:
                    images.popitem(last=False)
            return {"image": {"id": image_id, "name": label, "width": width, "height": height}}

        return EncodeStream(ticket, work, label).response()

    def _open(image_id: str) -> OpenImage:
        with images_lock:
            if image_id not in images:
                raise ImageRejected("unknown or expired image; open it again", 404)
            images.move_to_end(image_id)
            return images[image_id]

    @app.get("/api/images/{image_id}/pixels")
    async def pixels(image_id: str) -> Response:
        image = _open(image_id)
        async with queues["transfers"].admit() as ticket:
            await ticket.turn()
            data = await run_in_threadpool(_png_of_file, image, limits)
        return Response(data, media_type="image/png")

    @app.post("/api/images/{image_id}/predict")
    async def predict(image_id: str, request: Request) -> dict[str, Any]:
        image = _open(image_id)
        async with queues["predicts"].admit() as ticket:
            prompt = await _read_json(request)
            await ticket.turn()
            return await run_in_threadpool(_predict, image, prompt)

    @app.post("/api/images/{image_id}/everything")
    async def everything(image_id: str) -> dict[str, Any]:
        image = _open(image_id)
        async with queues["everything"].admit() as ticket:
            await ticket.turn()
            return await run_in_threadpool(_everything, generator, image, limits)

    @app.post("/api/images/{image_id}/download")
    async def download(image_id: str, request: Request, format: str = "png") -> Response:
        image = _open(image_id)
        if format not in ("png", "coco"):
            raise ValueError(f"download format must be 'png' or 'coco', got {format!r}")
        async with queues["transfers"].admit() as ticket:
            body = await _read_json(request)
            await ticket.turn()
            data = await run_in_threadpool(_mask_file, image, body, format)
        # The uploader chose the name: only safe characters go into the header.
        stem = re.sub(r"[^\w.-]", "_", image.name.rsplit(".", 1)[0]) or "image"
        media, suffix = ("image/png", "png") if format == "png" else ("application/json", "json")
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="{stem}_masks.{suffix}"'})

    return app


def _mask_file(image: OpenImage, body: Any, format: str) -> bytes:
    entries = body.get("masks") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError("download needs {\"masks\": [{\"runs\": [...], \"score\": s}, ...]}, at least one mask")
    masks = [runs_to_mask(entry.get("runs", []), image.height, image.width) for entry in entries]
    if format == "png":
        return masks_png(masks)
    return masks_coco_json(masks, [float(entry.get("score", 0.0)) for entry in entries])


def _everything(generator: AutomaticMaskGenerator, image: OpenImage, limits: ImageLimits) -> dict[str, Any]:
    """The generator's records for the image, largest first, as run lengths."""
    records = generator.generate(decode_image(image.data, image.name, limits))
    records.sort(key=lambda record: -record["area"])
    return {"width": image.width, "height": image.height,
            "masks": [{"runs": mask_to_runs(rle_to_mask(r["segmentation"])), "score": r["predicted_iou"]}
                      for r in records]}


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
    return {"width": image.width, "height": image.height,
            "masks": [{"runs": mask_to_runs(mask), "score": float(score)} for mask, score in zip(masks, scores)]}


def _check_declared_size(request: Request, limit: int, name: str) -> None:
    """Refuse a body whose declared ``Content-Length`` is over ``limit`` before reading any of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ImageRejected(f"{name}: file of {declared} bytes is over the limit of {limit} bytes", 413)


async def _read_body(request: Request, limit: int, name: str) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes (never held whole beyond it)."""
    _check_declared_size(request, limit, name)
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


def _png_of_file(image: OpenImage, limits: ImageLimits) -> bytes:
    # Lossless, so that the page shows the very pixels the model saw; light compression: it is sent locally.
    rgb = decode_image(image.data, image.name, limits)
    return png_bytes(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), compression=1)

"""Opening an image in the web app: the encode runs on a worker thread and its progress streams to the page as
NDJSON lines; a client that goes away stops the encode at the encoder's next block and frees its slot."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sam_core.interface import PromptableSegmenter
from sam_core.serve.admission import Ticket

Report = Callable[[dict[str, Any]], None]


class EncodeCancelled(Exception):
    """The client that asked for the encode went away."""


class EncoderProgress:
    """Forward hooks on the model's encoder blocks, registered once for the app's life (they do nothing on a
    thread that is not encoding for the app): each block run reports progress to the encode of its own thread.
    Other work on the same model at the same time ("segment everything", a Predictor used elsewhere) reports
    nothing.

    Args:
        model: the served model.
    """

    def __init__(self, model: PromptableSegmenter) -> None:
        self.blocks = _encoder_blocks(model)
        self._steps: dict[int, Callable[[], None]] = {}
        for block in self.blocks:
            block.register_forward_hook(self._after_block)

    def _after_block(self, *_: Any) -> None:
        step = self._steps.get(threading.get_ident())
        if step is not None:
            step()

    @contextmanager
    def reporting(self, report: Report, cancelled: threading.Event) -> Iterator[None]:
        """While inside, this thread's encoder blocks report ``{"progress": done / total}``; once ``cancelled``
        is set, the next block raises ``EncodeCancelled``."""
        done = 0

        def step() -> None:
            nonlocal done
            if cancelled.is_set():
                raise EncodeCancelled
            done += 1
            report({"progress": round(done / len(self.blocks), 3)})

        if cancelled.is_set():
            raise EncodeCancelled
        self._steps[threading.get_ident()] = step
        try:
            yield
        finally:
            del self._steps[threading.get_ident()]


class EncodeStream:
    """One image being opened: waits for its turn, runs ``work`` on a worker thread and yields its events as
    NDJSON lines: ``{"queued": n}`` while others are ahead, ``{"progress": p}`` per encoder block, then
    ``{"image": ...}`` or ``{"error": ...}``.

    Args:
        ticket: the admitted request's ticket; released when the worker has ended (or never started).
        work: ``work(report, cancelled)`` on the worker thread: the final event.
        label: the image's name, for an error message.
    """

    def __init__(self, ticket: Ticket, work: Callable[[Report, threading.Event], dict[str, Any]], label: str) -> None:
        self.ticket, self.work, self.label = ticket, work, label
        self.cancelled = threading.Event()
        self.worker: asyncio.Future | None = None

    def response(self) -> StreamingResponse:
        return _ClosingStream(self.events(), self.close, media_type="application/x-ndjson")

    async def events(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        if self.ticket.must_wait():
            yield _line({"queued": self.ticket.queue.admitted - 1})
        await self.ticket.turn()

        def report(event: dict[str, Any]) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(events.put_nowait, event)

        self.worker = loop.run_in_executor(None, self._run, report)
        while True:
            event = await events.get()
            yield _line(event)
            if "progress" not in event:
                return

    def _run(self, report: Report) -> None:
        try:
            report(self.work(report, self.cancelled))
        except EncodeCancelled:
            pass
        except Exception as error:  # the page shows it; the server stays up
            report({"error": f"{self.label}: could not encode the image ({error})"})

    def close(self) -> None:
        """The response ended, finished or not: stop the worker, and free the slot once it has stopped."""
        self.cancelled.set()
        if self.worker is None:
            self.ticket.release()
        else:
            self.worker.add_done_callback(lambda _: self.ticket.release())


class _ClosingStream(StreamingResponse):
    """A streaming response that calls ``on_close`` when it ends, normally, by an error or a disconnect."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None], media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event) + "\n").encode()


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

"""Bounded work in the web app: each kind of heavy request (opening an image, "segment everything", clicks,
file transfers) passes through a ``WorkQueue`` that admits a fixed number of requests at once (running or
waiting their turn) and refuses the rest at once with ``ServerBusy`` (503 + ``Retry-After``), before their
body is read or decoded. Memory then stays bounded by what the admitted requests hold.

A queue belongs to one event loop (the server's): tickets are admitted, awaited and released there only.
"""

from __future__ import annotations

import asyncio
import math
import time
from types import TracebackType


class ServerBusy(Exception):
    """More requests of one kind than the server admits; the answer is 503 with ``Retry-After``.

    Args:
        message: what the page shows.
        retry_after: whole seconds after which a new try is likely to be admitted.
    """

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WorkQueue:
    """Admits at most ``size`` requests at once, of which ``at_once`` run and the others wait, first come
    first served.

    Args:
        what: the work, plural, for the refusal message ("images being opened").
        size: the most requests admitted at once (running + waiting); at least ``at_once``.
        at_once: how many run at the same time.
        option: the command-line option that sets ``size``, named in the refusal message.
    """

    def __init__(self, what: str, size: int, at_once: int = 1, option: str = "") -> None:
        if size < 1 or at_once < 1:
            raise ValueError(f"a queue for {what} needs size >= 1 and at_once >= 1, got {size} and {at_once}")
        self.what, self.size, self.at_once, self.option = what, size, min(at_once, size), option
        self.admitted = 0
        self.refused = 0
        self._turns = asyncio.Semaphore(self.at_once)
        self._seconds = 1.0  # running mean of how long one request holds its turn

    def admit(self) -> Ticket:
        """A ticket for one request, or ``ServerBusy`` right away when ``size`` are already admitted."""
        if self.admitted >= self.size:
            self.refused += 1
            retry = max(1, math.ceil(self._seconds * self.admitted / self.at_once))
            option = f" ({self.option} {self.size})" if self.option else ""
            raise ServerBusy(f"the server is busy: {self.admitted} {self.what} already, its limit{option}; "
                             f"try again in {retry} s", retry)
        self.admitted += 1
        return Ticket(self)

    def running_full(self) -> bool:
        """Whether ``at_once`` requests are running, so that the next one waits."""
        return self._turns.locked()

    async def take_turn(self) -> None:
        """Wait until one of the ``at_once`` turns is free, and take it (a ticket does this)."""
        await self._turns.acquire()

    def finished(self, held_turn: bool, seconds: float) -> None:
        """One admitted request ended (a ticket calls this once): its admission, and its turn if it held one
        for ``seconds``, are free again."""
        self.admitted -= 1
        if held_turn:
            self._seconds = 0.8 * self._seconds + 0.2 * seconds
            self._turns.release()

    def status(self) -> dict[str, int]:
        """``{"size", "admitted", "refused"}``: the bound, the requests admitted now, those refused so far."""
        return {"size": self.size, "admitted": self.admitted, "refused": self.refused}


class Ticket:
    """One admitted request: ``await turn()`` before the work, ``release()`` (or leaving ``async with``) after
    it, whatever happened; releasing twice is harmless."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue
        self.has_turn = False
        self.released = False
        self._started = 0.0

    def must_wait(self) -> bool:
        """Whether ``turn()`` would wait for other requests first."""
        return self.queue.running_full()

    async def turn(self) -> None:
        """Wait until this request may run."""
        await self.queue.take_turn()
        self.has_turn, self._started = True, time.monotonic()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.queue.finished(self.has_turn, time.monotonic() - self._started)

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self.release()

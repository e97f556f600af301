"""How much work a ``serve`` worker takes on at once, so that ``/ping`` always answers.

SageMaker replaces an instance whose ``/ping`` takes over 2 s. A worker has more threads than it
lets work: at most ``working`` requests decode photos or wait for the model at once, the others
wait for their turn inside their own thread (in order, until their deadline), and no more than
``capacity`` (threads - 1) are admitted, so one thread is always free for ``/ping``. A request
over capacity, or still waiting at its deadline (``SAGEMAKER_MODEL_SERVER_TIMEOUT``), gets a 503
that says so, never a hung connection. Hand-written: gunicorn's own timeout does not bound a
request on threaded workers, and no WSGI library admits by thread budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

DECODE_PIXELS = 64_000_000  # one photo at the size limit, or five of 12 megapixels, at once


class Busy(Exception):
    """The worker cannot take or finish this request in time: 503, retry later."""


class Deadline:
    """When a request must be answered by (monotonic seconds)."""

    def __init__(self, seconds: float, setting: str):
        self.at = time.monotonic() + seconds
        self.seconds = seconds
        self.setting = setting

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise self.exceeded()

    def exceeded(self) -> Busy:
        return Busy(f"the request took longer than {self.setting}={self.seconds:g}s; retry, "
                    "or send fewer photos per request")


class Admission:
    """At most ``capacity`` requests admitted, ``working`` of them at work at once."""

    def __init__(self, capacity: int, working: int, timeout: float,
                 setting: str = "SAGEMAKER_MODEL_SERVER_TIMEOUT", *, decode_pixels: int = DECODE_PIXELS):
        self.capacity, self.working, self.timeout, self.setting = capacity, working, timeout, setting
        self.pixels = PixelBudget(decode_pixels)
        self._admitted = threading.BoundedSemaphore(capacity)
        self._working = threading.BoundedSemaphore(working)

    @contextmanager
    def request(self) -> Iterator[Deadline]:
        """Admit a request (or raise :class:`Busy` at once); its deadline."""
        if not self._admitted.acquire(blocking=False):
            raise Busy(f"this worker already has {self.capacity} requests in progress; retry")
        try:
            yield Deadline(self.timeout, self.setting)
        finally:
            self._admitted.release()

    @contextmanager
    def spare(self) -> Iterator[bool]:
        """A thread's slot for work outside a request (dropping a refused body), if one is free
        now: it counts against ``capacity`` like a request, so ``/ping`` keeps its thread."""
        spared = self._admitted.acquire(blocking=False)
        try:
            yield spared
        finally:
            if spared:
                self._admitted.release()

    @contextmanager
    def work(self, deadline: Deadline) -> Iterator[None]:
        """Wait for a working slot until the deadline (then :class:`Busy`)."""
        if not self._working.acquire(timeout=deadline.remaining()):
            raise Busy(f"the request waited {deadline.seconds:g}s ({self.setting}) without its turn: "
                       "the worker is busy; retry")
        try:
            yield
        finally:
            self._working.release()


class PixelBudget:
    """How many pixels a worker decodes at once: a photo's decode waits while others hold the
    budget (one bigger than the whole budget goes alone), until its request's deadline (then
    :class:`Busy`). A few hundred KB of PNG can declare 64 megapixels, about 0.8 GB to decode,
    and a worker has up to ``working`` requests decoding at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._held = 0
        self._changed = threading.Condition()

    @property
    def held(self) -> int:
        return self._held

    @contextmanager
    def hold(self, pixels: int, deadline: Deadline) -> Iterator[None]:
        with self._changed:
            if not self._changed.wait_for(lambda: self._held == 0 or self._held + pixels <= self.limit,
                                          timeout=deadline.remaining()):
                raise Busy(f"the request waited {deadline.seconds:g}s ({deadline.setting}) for memory to "
                           "decode its photos: the worker is decoding others; retry")
            self._held += pixels
        try:
            yield
        finally:
            with self._changed:
                self._held -= pixels
                self._changed.notify_all()

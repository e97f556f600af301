"""Every forward pass of a process on one thread, with the requests that wait together batched.

Request threads decode and preprocess in parallel, then hand their tensors to :class:`Batcher`.
Its single inference thread takes whatever has queued up meanwhile (up to ``max_images``) and
runs one forward pass for all of it, so concurrent requests share a batch and none waits for a
timer: at concurrency 1 a request goes straight through. One thread also means one OpenMP
thread team, kept warm, instead of one team per request thread (a forward pass started from a
fresh thread took 2.3x as long on this project's 2-core machine). Hand-written: gunicorn and
Flask have no batching, and the libraries that do (TorchServe, Ray Serve) are whole servers.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import torch

log = logging.getLogger("dogbreed.serve")
Forward = Callable[[torch.Tensor], torch.Tensor]


class _Job:
    __slots__ = ("inputs", "future")

    def __init__(self, inputs: torch.Tensor):
        self.inputs = inputs
        self.future: Future[torch.Tensor] = Future()


class Batcher:
    """Runs ``forward`` on one daemon thread over batches of the inputs submitted meanwhile."""

    def __init__(self, forward: Forward, max_images: int = 16, name: str = "dogbreed-inference"):
        if max_images < 1:
            raise ValueError("max_images must be at least 1")
        self.forward = forward
        self.max_images = max_images
        self.batches = 0  # forward passes run, and the images in them (for tests and logs)
        self.images = 0
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def run(self, inputs: torch.Tensor, timeout: float | None = None) -> torch.Tensor:
        """``forward(inputs)``, computed in a batch with other waiting inputs; raises
        TimeoutError after ``timeout`` seconds (the inputs are then dropped if not started)."""
        job = _Job(inputs)
        self._queue.put(job)
        try:
            return job.future.result(timeout)
        except TimeoutError:
            job.future.cancel()
            raise

    def _loop(self) -> None:
        carried: _Job | None = None
        while True:
            jobs = [carried or self._queue.get()]
            carried = None
            size = len(jobs[0].inputs)
            while size < self.max_images:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if size + len(job.inputs) > self.max_images:
                    carried = job  # first in the next batch
                    break
                jobs.append(job)
                size += len(job.inputs)
            self._run([job for job in jobs if job.future.set_running_or_notify_cancel()])

    def _run(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        try:
            inputs = jobs[0].inputs if len(jobs) == 1 else torch.cat([job.inputs for job in jobs])
            outputs = self.forward(inputs)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.batches += 1
        self.images += len(inputs)
        start = 0
        for job in jobs:
            end = start + len(job.inputs)
            job.future.set_result(outputs[start:end])
            start = end

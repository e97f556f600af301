"""The intra-op threads of each forward pass, shared out among the workers busy at that moment.

A worker alone in a forward pass uses every core (the latency of one request is the model's on
all cores); when several are, each takes an even share (no oversubscription, which stalls
torch's thread teams). The count of busy workers lives in shared memory created by gunicorn's
master before it forks. Hand-written: torch sizes its thread pool per process and knows nothing
of the other workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class SharedThreads:
    """``total`` threads (the host's cores) split among the processes in :meth:`share` at once."""

    def __init__(self, total: int):
        self.total = max(1, total)
        self._busy = multiprocessing.get_context("fork").Value("i", 0)

    @contextmanager
    def share(self) -> Iterator[int]:
        """Count this process in while the block runs, with its share of threads set."""
        with self._busy.get_lock():
            self._busy.value += 1
            busy = self._busy.value
        threads = max(1, self.total // busy)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        try:
            yield threads
        finally:
            with self._busy.get_lock():
                self._busy.value -= 1

"""The intra-op threads of each forward pass, shared out among the workers busy at that moment.

A worker alone in a forward pass uses every core (the latency of one request is the model's on
all cores); when several are, each takes an even share (no oversubscription, which stalls
torch's thread teams). The count of busy workers lives in shared memory created by gunicorn's
master before it forks. Hand-written: torch sizes its thread pool per process and knows nothing
of the other workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

SLOTS = 64  # processes counted at once by default (serve: twice its workers); more count without a slot


class SharedThreads:
    """``total`` threads (the host's cores) split among the processes in :meth:`share` at once.

    Each process in a forward pass holds a slot with its pid, so that gunicorn's master can free
    the slot of a worker that died in one (:meth:`forget`, from its ``child_exit`` hook): a
    worker killed mid-pass (the OOM killer) would otherwise count as busy for good, and every
    later pass would run on fewer threads."""

    def __init__(self, total: int, slots: int = SLOTS):
        self.total = max(1, total)
        self._pids = multiprocessing.get_context("fork").Array("i", slots)

    def busy(self) -> int:
        """How many processes are in a forward pass now."""
        with self._pids.get_lock():
            return sum(1 for pid in self._pids.get_obj() if pid)

    @contextmanager
    def share(self) -> Iterator[int]:
        """Count this process in while the block runs, with its share of threads set."""
        pid = os.getpid()
        with self._pids.get_lock():
            pids = self._pids.get_obj()
            busy = 1 + sum(1 for held in pids if held)
            slot = next((i for i, held in enumerate(pids) if not held), None)
            if slot is not None:
                pids[slot] = pid
        threads = max(1, self.total // busy)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        try:
            yield threads
        finally:
            if slot is not None:
                with self._pids.get_lock():
                    if self._pids.get_obj()[slot] == pid:
                        self._pids.get_obj()[slot] = 0

    def forget(self, pid: int) -> None:
        """Free the slot of process ``pid``, which has ended."""
        with self._pids.get_lock():
            pids = self._pids.get_obj()
            for i, held in enumerate(pids):
                if held == pid:
                    pids[i] = 0

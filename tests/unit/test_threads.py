"""serve's CPU layout: workers per host, and forward-pass threads shared among busy workers."""

from __future__ import annotations

import multiprocessing

import pytest
import torch

from dogbreed.serve import default_workers
from dogbreed.threads import SharedThreads

GIB = 1 << 30


def _forward_while_the_other_does(threads: SharedThreads, inside: object, out: object) -> None:
    with threads.share() as mine:
        inside.wait(30)  # both processes are in a forward pass now
        out.put((mine, torch.get_num_threads()))


def test_a_worker_alone_takes_every_core_and_busy_workers_split_them():
    threads = SharedThreads(4)
    with threads.share() as alone:
        assert alone == 4 and torch.get_num_threads() == 4
    ctx = multiprocessing.get_context("fork")  # as gunicorn forks its workers
    inside, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_forward_while_the_other_does, args=(threads, inside, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    got = sorted(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(30)
    # The first in sees itself alone (4), the second sees two busy (2); the counts are shared.
    assert got == [(2, 2), (4, 4)]
    with threads.share() as alone_again:
        assert alone_again == 4


@pytest.mark.parametrize("gpus,cpus,memory,workers", [
    (0, 2, 24 * GIB, 2),    # this machine: one per core
    (0, 16, 8 * GIB, 8),    # memory bounds it
    (0, 1, GIB // 2, 1),    # never none
    (1, 8, 32 * GIB, 2),    # 2 per GPU
    (4, 48, 192 * GIB, 8),
])
def test_default_workers(gpus, cpus, memory, workers):
    assert default_workers(gpus, cpus, memory) == workers

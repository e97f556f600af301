"""serve's CPU layout: workers per host, and forward-pass threads shared among busy workers."""

from __future__ import annotations

import multiprocessing
import os
import signal
from types import SimpleNamespace

import pytest
import torch

from dogbreed.serve.app import ModelState
from dogbreed.serve.server import default_workers, gunicorn_options
from dogbreed.serve.threads import SharedThreads

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


def _stuck_in_a_forward_pass(threads: SharedThreads, inside: object) -> None:
    with threads.share():
        inside.set()
        signal.pause()  # until killed


def killed_mid_pass(threads: SharedThreads) -> int:
    """The pid of a forked process killed (SIGKILL) inside :meth:`SharedThreads.share`."""
    ctx = multiprocessing.get_context("fork")
    inside = ctx.Event()
    proc = ctx.Process(target=_stuck_in_a_forward_pass, args=(threads, inside))
    proc.start()
    assert inside.wait(30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    return proc.pid


@pytest.mark.parametrize("slots", [1, 4])  # 1: this process finds no slot free, and still counts
def test_a_worker_killed_in_a_forward_pass_is_forgotten_when_the_master_hears_of_it(slots):
    threads = SharedThreads(4, slots=slots)
    pid = killed_mid_pass(threads)
    assert threads.busy() == 1  # its slot outlives it...
    with threads.share() as mine:
        assert mine == 2
    threads.forget(pid)  # ...until gunicorn's master reports the exit
    assert threads.busy() == 0
    with threads.share() as mine:
        assert mine == 4


def test_serve_frees_the_slot_of_a_worker_that_exits(tmp_path):
    """serve's gunicorn configuration forgets a worker in the master's child_exit hook."""
    threads = SharedThreads(4)
    options = gunicorn_options(ModelState(tmp_path, threads=threads), "127.0.0.1:8080", 2, 60, 0)
    pid = killed_mid_pass(threads)
    options["child_exit"](None, SimpleNamespace(pid=pid))  # what gunicorn passes: its Worker
    assert threads.busy() == 0


@pytest.mark.parametrize("gpus,cpus,memory,workers", [
    (0, 2, 24 * GIB, 2),    # this machine: one per core
    (0, 16, 8 * GIB, 8),    # memory bounds it
    (0, 1, GIB // 2, 1),    # never none
    (1, 8, 32 * GIB, 2),    # 2 per GPU
    (4, 48, 192 * GIB, 8),
])
def test_default_workers(gpus, cpus, memory, workers):
    assert default_workers(gpus, cpus, memory) == workers

"""The inference thread: batches what waits, hands each request its own rows, never mixes them up."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from dogbreed.serve.batching import Batcher


class Gate:
    """A forward function that records its batches and, while closed, holds the first one."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.open = threading.Event()
        self.entered = threading.Event()

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        self.open.wait(10)
        self.sizes.append(len(inputs))
        self.threads.add(threading.current_thread().name)
        return inputs * 10


def test_requests_that_wait_together_share_a_forward_pass_and_get_their_own_rows():
    gate = Gate()
    batcher = Batcher(gate, max_images=8)
    inputs = [torch.full((1 + i % 2, 3), float(i)) for i in range(9)]
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(batcher.run, inputs[0], 10)
        assert gate.entered.wait(10)  # the first is in its forward pass; the others queue up
        rest = [pool.submit(batcher.run, x, 10) for x in inputs[1:]]
        deadline = time.monotonic() + 10
        while batcher._queue.qsize() < 8:  # all eight queued behind the first: none is batched yet
            assert time.monotonic() < deadline, f"only {batcher._queue.qsize()} of 8 requests queued in 10 s"
            threading.Event().wait(0.01)
        gate.open.set()
        answers = [first.result(), *(f.result() for f in rest)]
    for x, answer in zip(inputs, answers, strict=True):
        assert torch.equal(answer, x * 10)
    # 1 alone, then 12 images waiting: 8 at most per pass, the next request carried over.
    assert gate.sizes[0] == 1 and gate.sizes[1:] == [8, 4]
    assert len(gate.sizes) == 3 and gate.threads == {"dogbreed-inference"}
    assert (batcher.batches, batcher.images) == (3, 13)


def test_a_request_larger_than_a_batch_runs_alone():
    gate = Gate()
    gate.open.set()
    batcher = Batcher(gate, max_images=4)
    assert torch.equal(batcher.run(torch.ones(6, 2), 10), torch.full((6, 2), 10.0))
    assert gate.sizes == [6]


def test_an_error_reaches_every_request_of_the_batch_and_the_thread_goes_on():
    calls = []

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        calls.append(len(inputs))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return inputs

    batcher = Batcher(forward)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.run(torch.ones(1, 2), 10)
    assert torch.equal(batcher.run(torch.ones(2, 2), 10), torch.ones(2, 2))


def test_a_request_that_gives_up_is_not_computed():
    gate = Gate()
    batcher = Batcher(gate)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher.run, torch.ones(1, 2), 10)
        assert gate.entered.wait(10)
        with pytest.raises(TimeoutError):
            batcher.run(torch.zeros(3, 2), timeout=0.05)
        gate.open.set()
        first.result()
    assert batcher.run(torch.ones(2, 2), 10).shape == (2, 2)
    assert gate.sizes == [1, 2]  # the 3 images whose request timed out never ran


def test_max_images_must_be_positive():
    with pytest.raises(ValueError):
        Batcher(lambda x: x, max_images=0)

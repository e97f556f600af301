"""What watches the training loop without changing it: the Debugger hook, the profiler's step
timer and system monitor, and the progress lines. Each is a :class:`Callback`; the loop calls
:class:`Callbacks`, which calls each in turn (in list order: the hook's gradient sample is taken
before the timer marks the backward pass).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from dogbreed.debugger.hook import DebugHook
from dogbreed.debugger.profiler import StepTimer, SystemMonitor

log = logging.getLogger(__name__)


@dataclass
class EpochProgress:
    """Where an epoch stands: the loop updates it after every step (tensors stay on the device
    until someone asks, so a step never waits for the GPU)."""

    epoch: int
    epochs: int
    batches: int
    batch: int = 0
    seen: int = 0
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    correct: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
    started: float = field(default_factory=time.monotonic)

    def loss(self) -> float:
        return self.loss_sum.item() / max(1, self.seen)

    def accuracy(self) -> float:
        return self.correct.item() / max(1, self.seen)


class Callback:
    """The loop's events; every method does nothing unless overridden."""

    def run_begin(self) -> None: ...
    def run_end(self) -> None: ...
    def epoch_begin(self, progress: EpochProgress, step: int) -> None: ...
    def data_ready(self) -> None: ...
    def backward_done(self) -> None: ...
    def step_end(self, progress: EpochProgress, step: int) -> None: ...
    def epoch_end(self, progress: EpochProgress) -> None: ...
    def eval_begin(self) -> None: ...
    def close(self) -> None: ...


class Callbacks(Callback):
    """Several callbacks as one."""

    def __init__(self, callbacks: list[Callback]):
        self.callbacks = callbacks

    def run_begin(self) -> None:
        for c in self.callbacks:
            c.run_begin()

    def run_end(self) -> None:
        for c in self.callbacks:
            c.run_end()

    def epoch_begin(self, progress: EpochProgress, step: int) -> None:
        for c in self.callbacks:
            c.epoch_begin(progress, step)

    def data_ready(self) -> None:
        for c in self.callbacks:
            c.data_ready()

    def backward_done(self) -> None:
        for c in self.callbacks:
            c.backward_done()

    def step_end(self, progress: EpochProgress, step: int) -> None:
        for c in self.callbacks:
            c.step_end(progress, step)

    def epoch_end(self, progress: EpochProgress) -> None:
        for c in self.callbacks:
            c.epoch_end(progress)

    def eval_begin(self) -> None:
        for c in self.callbacks:
            c.eval_begin()

    def close(self) -> None:
        for c in self.callbacks:
            c.close()


class Debugger(Callback):
    """SageMaker Debugger's hook: train/eval modes, the gradient sample, closing."""

    def __init__(self, hook: DebugHook):
        self.hook = hook

    def epoch_begin(self, progress: EpochProgress, step: int) -> None:
        self.hook.train_mode()

    def backward_done(self) -> None:
        self.hook.save_gradient_sample()

    def eval_begin(self) -> None:
        self.hook.eval_mode()

    def close(self) -> None:
        self.hook.close()


class Profiler(Callback):
    """Where each step's time goes (data, backward, optimizer) and the host's system use."""

    def __init__(self, timer: StepTimer, monitor: SystemMonitor | None):
        self.timer, self.monitor = timer, monitor

    def run_begin(self) -> None:
        if self.monitor:
            self.monitor.start()

    def run_end(self) -> None:
        if self.monitor:
            self.monitor.stop()

    def epoch_begin(self, progress: EpochProgress, step: int) -> None:
        self.timer.begin(step)

    def data_ready(self) -> None:
        self.timer.mark("data")

    def backward_done(self) -> None:
        self.timer.mark("backward")

    def step_end(self, progress: EpochProgress, step: int) -> None:
        self.timer.mark("optimizer")
        self.timer.end(progress.epoch, step)
        self.timer.begin(step + 1)

    def epoch_end(self, progress: EpochProgress) -> None:
        self.timer.flush()


class ProgressLog(Callback):
    """A progress line every ``seconds`` within an epoch (0: none)."""

    def __init__(self, seconds: float, batch_size: int):
        self.seconds, self.batch_size = seconds, batch_size
        self.last = 0.0

    def epoch_begin(self, progress: EpochProgress, step: int) -> None:
        self.last = progress.started

    def step_end(self, progress: EpochProgress, step: int) -> None:
        now = time.monotonic()
        if not self.seconds or now - self.last < self.seconds:
            return
        self.last = now
        rate = progress.seen / max(now - progress.started, 1e-9)
        eta = (progress.batches - progress.batch) * self.batch_size / max(rate, 1e-9)
        log.info("progress: epoch %d/%d batch %d/%d (%.0f%%) loss %.4f acc %.4f "
                 "%.1f img/s/process, epoch eta %.0fs", progress.epoch, progress.epochs, progress.batch,
                 progress.batches, 100 * progress.batch / progress.batches, progress.loss(),
                 progress.accuracy(), rate, eta)

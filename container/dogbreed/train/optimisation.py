"""How the weights learn: AdamW, the loss, mixed precision and the learning-rate schedule.

The schedule is torch's ``LambdaLR`` (cosine from ``lr`` to 0 over the run, or constant), stepped
once per optimizer step; its state is in the checkpoint, so a resumed run carries on at the same
point. A checkpoint written before it held the schedule resumes from its step count.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from dogbreed.contract.hyperparameters import Hyperparameters


def schedule(kind: str, total_steps: int) -> Callable[[int], float]:
    """The factor of the peak learning rate before step ``step`` (0-based)."""
    if kind == "constant" or total_steps == 0:
        return lambda _step: 1.0
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


class Optimisation:
    """AdamW over ``trainable``, the cross-entropy loss, autocast and the gradient scaler (float16
    only) and the schedule over ``total_steps`` steps."""

    def __init__(self, trainable: Iterable[nn.Parameter], params: Hyperparameters,
                 amp_dtype: torch.dtype | None, total_steps: int):
        self.amp_dtype = amp_dtype
        self.optimizer = torch.optim.AdamW(list(trainable), lr=params.lr, eps=params.eps,
                                           weight_decay=params.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, schedule(params.lr_schedule, total_steps))
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=params.label_smoothing)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits, labels)

    def backward(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()

    def step(self) -> None:
        """The optimizer step on the gradients of :meth:`backward`, then the schedule's."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any], step: int) -> None:
        """Restore a checkpoint's state; ``step``: the steps it had done (for a checkpoint without
        the schedule's state)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            return
        self.scheduler.last_epoch = step
        factor = self.scheduler.lr_lambdas[0](step)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * factor
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

"""What the training processes do together: sums, agreement, gathering, broadcast and barriers.

In one process every operation is the identity (no process group is needed), so the training loop
is written once and runs in-process in tests; with several it calls ``torch.distributed``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.distributed as dist

from dogbreed.train.distributed import World

T = TypeVar("T")


class Collectives:
    """The collective operations of one process of ``world`` on ``device``."""

    def __init__(self, world: World, device: torch.device):
        self.world, self.device = world, device

    def shard(self, count: int) -> range:
        """This process's share of ``count`` items: every ``size``-th from its rank."""
        return range(self.world.rank, count, self.world.size)

    def all_sum(self, values: list[float]) -> list[float]:
        """Each value summed over the processes (float64)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world.distributed:
            dist.all_reduce(tensor)
        return tensor.tolist()

    def all_agree(self, held: bool) -> bool:
        """Whether every process holds something (each says whether it does)."""
        if not self.world.distributed:
            return held
        flag = torch.tensor([1 if held else 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def gather(self, part: T) -> list[T]:
        """Every process's ``part``, in rank order, on every process."""
        if not self.world.distributed:
            return [part]
        parts: list[Any] = [None] * self.world.size
        dist.all_gather_object(parts, part)
        return parts

    def broadcast(self, value: T | None) -> T | None:
        """The main process's ``value`` on every process."""
        if not self.world.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def barrier(self) -> None:
        if self.world.distributed:
            dist.barrier()

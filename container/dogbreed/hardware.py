"""What the host offers: device, mixed precision, processes, threads and loader workers."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import UserError
from .hyperparameters import AUTO


class HardwareError(UserError):
    """The hyperparameters ask for hardware this host does not have."""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def processes_per_host(requested: int | str) -> int:
    gpus = torch.cuda.device_count()
    if requested == AUTO:
        return max(1, gpus)
    if gpus and int(requested) > gpus:
        raise HardwareError(
            f"processes_per_host={requested} but this host has {gpus} GPU(s); "
            f"use at most {gpus} or 'auto'"
        )
    return int(requested)


@dataclass(frozen=True)
class Placement:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full float32
    threads: int
    loader_workers: int

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last suits cuDNN's convolutions; on this CPU it measured no faster."""
        return torch.channels_last if self.cuda else torch.contiguous_format

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.cuda else "CPU"
        amp = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off"
        return (f"{self.device} ({name}), mixed precision {amp}, {self.threads} torch thread(s), "
                f"{self.loader_workers} loader worker(s)")


def place(local_rank: int, local_size: int, *, amp: bool, workers: int | str) -> Placement:
    """Pick this process's device and thread budget (and apply the thread count)."""
    per_process = max(1, cpu_count() // max(1, local_size))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        amp_dtype = dtype if amp else None
        auto_workers = min(8, max(1, per_process - 1))
    else:
        device = torch.device("cpu")
        amp_dtype = None
        auto_workers = 1 if per_process > 1 else 0
    threads = per_process
    torch.set_num_threads(threads)
    loader_workers = auto_workers if workers == AUTO else int(workers)
    return Placement(device, amp_dtype, threads, loader_workers)

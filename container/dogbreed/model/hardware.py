"""What the host offers: device, mixed precision, processes, threads and loader workers."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from dogbreed.contract.hyperparameters import AUTO
from dogbreed.errors import UserError

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class NvidiaGpus:
    """The NVIDIA GPUs and driver NVML reports."""

    count: int
    driver: str
    names: tuple[str, ...]

    def cannot_use(self) -> str:
        """Why this torch cannot use them (the one message of train and serve)."""
        return (f"{self.count} NVIDIA GPU(s) ({', '.join(self.names)}) with driver {self.driver}, but torch "
                f"{torch.__version__} (CUDA {torch.version.cuda}) cannot use them: the driver is too old "
                "for this CUDA, or the image's CUDA forward-compatibility libraries are missing")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvidia_gpus() -> NvidiaGpus | None:
    """What NVML sees, without initialising CUDA (safe before forking); None: no driver, no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            driver = pynvml.nvmlSystemGetDriverVersion()
            names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML, no driver, no GPU: nothing to report
        return None
    return NvidiaGpus(count, _text(driver), tuple(_text(n) for n in names)) if count else None


def unusable_gpus() -> str | None:
    """What NVML sees when CUDA sees no GPU (the driver is there, CUDA cannot use it: too old for
    this torch's CUDA, or the forward-compatibility libraries missing), else None."""
    if torch.cuda.is_available():
        return None
    gpus = nvidia_gpus()
    return gpus.cannot_use() if gpus else None


def place(local_rank: int, local_size: int, *, amp: bool, workers: int | str,
          allow_cpu_fallback: bool = False) -> Placement:
    """Pick this process's device and thread budget (and apply the thread count). GPUs that
    CUDA cannot use fail the run (a GPU job must not crawl on the CPU unnoticed) unless
    ``allow_cpu_fallback``, which trains on the CPU with a warning."""
    per_process = max(1, cpu_count() // max(1, local_size))
    problem = unusable_gpus()
    if problem and not allow_cpu_fallback:
        raise HardwareError(problem + "; set allow_cpu_fallback=true to train on the CPU instead")
    if problem:
        log.warning("%s; training on the CPU (allow_cpu_fallback=true)", problem)
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

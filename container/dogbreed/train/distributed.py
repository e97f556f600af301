"""Several training processes: one per GPU on every host of resourceconfig.json.

``train`` hands the workers to torchrun's elastic agent (``elastic_launch``): it
starts ``processes_per_host`` copies of ``python -m dogbreed.train`` with the
torch.distributed variables, stops the rest as soon as one fails, forwards
SIGTERM, and collects each worker's torchelastic error file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
from torch.distributed.elastic.utils.distributed import get_free_port
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from dogbreed.contract.opt_ml import ResourceConfig

log = logging.getLogger(__name__)
DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class World:
    """Where this process stands among all training processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def worker_world() -> World | None:
    """The World of a worker started by the elastic agent (from its environment), else None."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    env = os.environ
    return World(rank=int(env["RANK"]), local_rank=int(env["LOCAL_RANK"]),
                 size=int(env["WORLD_SIZE"]), local_size=int(env["LOCAL_WORLD_SIZE"]))


def init_process_group(world: World, device: torch.device) -> None:
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)


class WorkerFailed(Exception):
    """A worker failed: the first failed worker's own one-line reason; the failed workers and
    its traceback as details."""

    def __init__(self, reason: str, details: str):
        super().__init__(reason)
        self.details = details


def record_failure(reason: str, details: str) -> None:
    """A worker's failure, for its agent: torchelastic's error file (TORCHELASTIC_ERROR_FILE, in
    the format of its ErrorHandler) with the one-line reason as message, ``details`` as traceback."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        data = {"message": {"message": reason, "extraInfo": {
            "py_callstack": details, "timestamp": str(int(time.time()))}}}
        Path(path).write_text(json.dumps(data), encoding="utf-8")


def launch(nproc: int, resources: ResourceConfig, master_addr: str | None = None,
           master_port: int | None = None) -> None:
    """Run ``nproc`` workers on this host, one node of a static rendezvous at the first host
    (``master_addr``/``master_port`` override it: DOGBREED_MASTER_ADDR, DOGBREED_MASTER_PORT).

    Raises WorkerFailed for the first worker that failed, SignalException on SIGTERM (after the
    agent has passed it on to the workers and waited for them)."""
    nodes = len(resources.hosts)
    addr = master_addr or ("127.0.0.1" if nodes == 1 else resources.master_host)
    port = str(master_port or (get_free_port() if nodes == 1 else DEFAULT_MASTER_PORT))
    if resources.network_interface_name:
        os.environ.setdefault("NCCL_SOCKET_IFNAME", resources.network_interface_name)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", resources.network_interface_name)
    config = LaunchConfig(
        min_nodes=nodes, max_nodes=nodes, nproc_per_node=nproc, run_id="dogbreed",
        rdzv_backend="static", rdzv_endpoint=f"{addr}:{port}",
        rdzv_configs={"rank": resources.host_rank}, max_restarts=0,
    )
    log.info("launched %d worker(s) on %s (world size %d, master %s:%s)",
             nproc, resources.current_host, nproc * nodes, addr, port)
    try:
        elastic_launch(config, sys.executable)("-m", "dogbreed.train")
    except ChildFailedError as exc:
        raise WorkerFailed(*_reason(exc)) from None


def _reason(exc: ChildFailedError) -> tuple[str, str]:
    """(the first failed worker's reason; every failed worker, then the first one's traceback)."""
    failures = sorted(exc.failures.items(), key=lambda item: _written(item[1]))
    rank, first = failures[0]
    listed = [f"  rank {r} (exit code {f.exitcode}): {_message(r, f)}" for r, f in failures]
    trace = first.message["extraInfo"]["py_callstack"] if isinstance(first.message, dict) else ""
    return _message(rank, first), "\n".join(["failed workers, first failure first:", *listed, trace])


def _message(rank: int, failure: ProcessFailure) -> str:
    if isinstance(failure.message, dict):  # an error file written by record_failure
        return failure.message["message"]
    if failure.exitcode < 0:
        return f"training worker {rank} was killed by {failure.signal_name()}"
    return f"training worker {rank} exited with code {failure.exitcode}"


def _written(failure: ProcessFailure) -> tuple[int, int]:
    """Order of failures: torchelastic's timestamp (seconds), then the error file's time (ns);
    a failure without a file (a signal) goes first within its second, as torchelastic has it."""
    try:
        return failure.timestamp, os.stat(failure.error_file).st_mtime_ns
    except OSError:  # no error file ("<N/A>")
        return failure.timestamp, 0

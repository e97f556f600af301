"""Several training processes: one per GPU on every host of resourceconfig.json.

``train`` launches its own workers (no torchrun needed in the image): the
process started by SageMaker becomes a launcher that starts
``processes_per_host`` copies of ``python -m dogbreed.train`` with the usual
torch.distributed variables, waits for them, stops the rest as soon as one
fails, and reports the first failure.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .opt_ml import ResourceConfig

log = logging.getLogger(__name__)
ENV_WORKER = "DOGBREED_WORKER"
ENV_FAILURE_FILE = "DOGBREED_WORKER_FAILURE_FILE"
ENV_MASTER_PORT = "DOGBREED_MASTER_PORT"
# Overrides the first host's name as rendezvous address (a cluster without SageMaker's DNS).
ENV_MASTER_ADDR = "DOGBREED_MASTER_ADDR"
DEFAULT_MASTER_PORT = 29500
STOP_GRACE_SECONDS = 20


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
    """The World of a launched worker (from its environment), None in a plain process."""
    if os.environ.get(ENV_WORKER) != "1":
        return None
    return World(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        size=int(os.environ["WORLD_SIZE"]),
        local_size=int(os.environ["LOCAL_WORLD_SIZE"]),
    )


def init_process_group(world: World, device: torch.device) -> None:
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(nproc: int, resources: ResourceConfig) -> tuple[int, str | None, str]:
    """Run ``nproc`` workers on this host; return (exit code, failure reason, details)."""
    single_host = len(resources.hosts) == 1
    master_addr = os.environ.get(ENV_MASTER_ADDR) or (
        "127.0.0.1" if single_host else resources.master_host)
    port = os.environ.get(ENV_MASTER_PORT) or str(_free_port() if single_host else DEFAULT_MASTER_PORT)
    world_size = nproc * len(resources.hosts)
    failure_dir = Path(tempfile.mkdtemp(prefix="dogbreed-workers-"))
    procs: list[subprocess.Popen] = []
    for local_rank in range(nproc):
        rank = resources.host_rank * nproc + local_rank
        env = dict(
            os.environ,
            **{
                ENV_WORKER: "1",
                ENV_FAILURE_FILE: str(failure_dir / f"rank{rank}"),
                "RANK": str(rank),
                "LOCAL_RANK": str(local_rank),
                "WORLD_SIZE": str(world_size),
                "LOCAL_WORLD_SIZE": str(nproc),
                "MASTER_ADDR": master_addr,
                "MASTER_PORT": port,
            },
        )
        if resources.network_interface_name:
            env.setdefault("NCCL_SOCKET_IFNAME", resources.network_interface_name)
            env.setdefault("GLOO_SOCKET_IFNAME", resources.network_interface_name)
        procs.append(subprocess.Popen([sys.executable, "-m", "dogbreed.train"], env=env))
    log.info("launched %d worker(s) on %s (world size %d, master %s:%s)",
             nproc, resources.current_host, world_size, master_addr, port)

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        failed = _wait(procs)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed is None:
        return 0, None, ""
    index, code = failed
    rank = resources.host_rank * nproc + index
    reason_file = failure_dir / f"rank{rank}"
    text = reason_file.read_text(encoding="utf-8") if reason_file.exists() else ""
    reason, _, details = text.partition("\n")
    reason = reason or f"training worker {rank} exited with code {code}"
    return (code or 1), reason, details


def _wait(procs: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Wait for all; on the first failure stop the others. Returns (local index, code)."""
    while True:
        codes = [p.poll() for p in procs]
        bad = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if bad:
            _stop(procs)
            return bad[0]
        if all(c == 0 for c in codes):
            return None
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

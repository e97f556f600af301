"""A profile of the run, cheap enough to leave on: system use and where each step's time goes.

Two parts, both under the profiler folder (``/opt/ml/output/profiler``):

- ``system/incremental/<YYYYMMDDHH>/<unix time>.<host>.json``: CPU, GPU, GPU-memory
  and host-memory utilisation sampled every interval, in the format SageMaker
  Debugger's system monitor writes, so one reader (smdebug's) and one set of
  rules serve local runs and SageMaker jobs. On SageMaker the platform samples
  the instance itself, so this monitor only runs where no profilerconfig.json
  says otherwise.
- ``framework/steps.jsonl``: per training step, seconds waiting for data, in
  forward and backward, and in the optimiser (GPU steps are timed exactly on
  every ``SYNC_EVERY``-th step, where the device is synchronised).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import torch

log = logging.getLogger(__name__)
SYSTEM_DIR = Path("system") / "incremental"
STEPS_FILE = Path("framework") / "steps.jsonl"
FILE_SECONDS = 60  # a new system file every minute, as SageMaker does
SYNC_EVERY = 10


@dataclass(frozen=True)
class ProfilerSettings:
    enabled: bool
    directory: Path
    system_interval: float  # seconds; 0 = the system monitor is off

    @classmethod
    def resolve(cls, config_file: Path, default_dir: Path, interval_ms: int) -> ProfilerSettings:
        """profilerconfig.json (SageMaker) wins over the ``profiler_interval_ms`` hyperparameter."""
        if config_file.is_file():
            try:
                config = json.loads(config_file.read_text().lower())
            except (OSError, json.JSONDecodeError) as exc:
                log.warning("profiler: %s unreadable (%s); profiling off", config_file, exc)
                return cls(False, default_dir, 0)
            if config.get("disableprofiler"):
                return cls(False, default_dir, 0)
            params = config.get("profilingparameters") or {}
            directory = Path(params.get("localpath") or default_dir)
            # SageMaker samples the instance itself: only the step timings come from here.
            return cls(True, directory, 0)
        if interval_ms <= 0:
            return cls(False, default_dir, 0)
        return cls(True, default_dir, interval_ms / 1000)


class SystemMonitor:
    """A daemon thread sampling utilisation into SageMaker-format system metric files."""

    def __init__(self, directory: Path, interval: float, node_id: str):
        self.directory = directory / SYSTEM_DIR
        self.interval = interval
        self.node_id = node_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="system-monitor", daemon=True)
        self._gpus: list[Any] = []
        self._nvml: Any = None

    def start(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._gpus = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001 - no NVIDIA driver: CPU and memory only
            self._gpus = []
        psutil.cpu_percent(percpu=True)  # the first reading is meaningless
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _events(self, now: float) -> list[dict[str, Any]]:
        def event(kind: str, name: str, dimension: str, value: float) -> dict[str, Any]:
            return {"Type": kind, "Name": name, "Dimension": dimension, "Value": round(value, 2),
                    "NodeId": self.node_id, "Timestamp": round(now, 3)}

        events = [event("cpu", f"cpu{i}", "CPUUtilization", v)
                  for i, v in enumerate(psutil.cpu_percent(percpu=True))]
        events.append(event("memory", "MemoryUsedPercent", "MemoryUsedPercent",
                            psutil.virtual_memory().percent))
        for i, handle in enumerate(self._gpus):
            try:
                util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception:  # noqa: BLE001 - a GPU that stops answering is skipped
                continue
            events.append(event("gpu", f"gpu{i}", "GPUUtilization", util.gpu))
            events.append(event("gpu", f"gpu{i}", "GPUMemoryUtilization", 100 * mem.used / mem.total))
        return events

    def _run(self) -> None:
        current: Path | None = None
        opened = 0.0
        handle = None
        try:
            while not self._stop.wait(self.interval):
                now = time.time()
                if handle is None or now - opened >= FILE_SECONDS:
                    if handle:
                        handle.close()
                    hour = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d%H")
                    current = self.directory / hour / f"{int(now)}.{self.node_id}.json"
                    current.parent.mkdir(parents=True, exist_ok=True)
                    handle, opened = open(current, "a", encoding="utf-8"), now  # noqa: SIM115
                handle.write("".join(json.dumps(e) + "\n" for e in self._events(now)))
                handle.flush()
        except Exception as exc:  # noqa: BLE001 - profiling never costs the run
            log.warning("system monitor stopped: %s: %s", type(exc).__name__, exc)
        finally:
            if handle:
                handle.close()


class StepTimer:
    """Splits each training step into data wait, forward+backward and optimiser time."""

    def __init__(self, directory: Path | None, cuda: bool):
        self.path = directory / STEPS_FILE if directory else None
        self.cuda = cuda
        self.records: list[dict[str, Any]] = []
        self._marks: dict[str, float] = {}
        self._exact = True

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def _now(self, sync: bool) -> float:
        if sync and self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def begin(self, step: int) -> None:
        """Before the next batch is fetched."""
        if self.enabled:
            self._exact = not self.cuda or step % SYNC_EVERY == 0
            self._marks = {"start": time.perf_counter()}

    def mark(self, phase: str) -> None:
        """'data' after the batch arrived, 'backward' after backward, 'optimizer' after the step."""
        if self.enabled and self._marks:
            self._marks[phase] = self._now(self._exact and phase != "data")

    def end(self, epoch: int, step: int) -> None:
        m = self._marks
        if not self.enabled or not {"start", "data", "backward", "optimizer"} <= m.keys():
            return
        record = {"epoch": epoch, "step": step, "data_s": round(m["data"] - m["start"], 6),
                  "timestamp": round(time.time(), 3)}
        if self._exact:
            record["forward_backward_s"] = round(m["backward"] - m["data"], 6)
            record["optimizer_s"] = round(m["optimizer"] - m["backward"], 6)
        self.records.append(record)
        self._marks = {}

    def flush(self) -> None:
        if not self.enabled or not self.records:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in self.records))
        except OSError as exc:
            log.warning("step timings not written: %s", exc)
        self.records = []

"""The local backend: the real `train` program as a process, in its own /opt/ml folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dogbreed.opt_ml import METADATA_FILE, OptML


@dataclass
class TrainResult:
    run_dir: Path
    opt_ml: OptML
    returncode: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def metadata(self) -> dict:
        return json.loads((self.opt_ml.model_dir / METADATA_FILE).read_text())

    def failure(self) -> str:
        path = self.opt_ml.failure_file
        return path.read_text().splitlines()[0] if path.is_file() else f"exit code {self.returncode}"


def new_run_dir(workdir: Path, kind: str, name: str | None = None) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = workdir / "runs" / (name or f"{kind}-{stamp}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_training(run_dir: Path, channels: dict[str, Path], hyperparameters: dict[str, str], *,
                 on_line: Callable[[str], None] | None = None,
                 env: dict[str, str] | None = None,
                 debug_hook: dict | None = None,
                 cpus: set[int] | None = None) -> TrainResult:
    """Lay out ``run_dir/opt_ml`` and run ``train`` there; every output line goes to
    ``run_dir/train.log`` and to ``on_line`` (default: stdout). ``debug_hook``: a
    debughookconfig.json (:func:`dogbreed.debugger.hook_config`) turns the debugger on; ``cpus``
    pins the run to those cores (train sizes its threads to them). If ``on_line`` raises, the run
    is stopped and the exception goes on."""
    opt = OptML(run_dir / "opt_ml")
    opt.write_inputs(channels, hyperparameters, debug_hook=debug_hook)
    emit = on_line or (lambda line: print(line, flush=True))
    started = time.monotonic()
    with open(run_dir / "train.log", "a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dogbreed.train"],
            env={**os.environ, **(env or {}), "OPT_ML": str(opt.root), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                emit(line.rstrip("\n"))
            proc.wait()
        except BaseException:
            proc.terminate()  # SIGTERM: train stops at once, its checkpoints kept
            proc.wait()
            raise
    return TrainResult(run_dir, opt, proc.returncode, time.monotonic() - started)

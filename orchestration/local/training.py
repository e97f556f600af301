"""The real `train` program in its own /opt/ml folder, in the image or as a process
(:mod:`orchestration.local.runner`), its output followed line by line."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dogbreed.contract.artifact import ModelArtifact
from dogbreed.contract.environment import BASE_DIR
from dogbreed.contract.opt_ml import OptML

from .. import interrupts
from .runner import PROCESS, Runner

_active: dict[int, tuple[Runner, subprocess.Popen, str]] = {}  # pid -> (runner, process, name)
_active_lock = threading.RLock()  # reentrant: the signal handler may interrupt its holder


def stop_all() -> int:
    """Stop every `train` this process started that still runs (all trials of a study); return
    how many. Called by the command line's signal handlers: trials run in threads, which a signal
    does not interrupt."""
    with _active_lock:
        runs = list(_active.values())
    for runner, proc, name in runs:
        runner.stop(proc, name, wait=False)  # their readers wait for them
    return len(runs)


interrupts.on_interrupt(stop_all)


@dataclass
class RunResult:
    """One `train` run that ended: its folder, exit code and time."""

    run_dir: Path
    opt_ml: OptML
    returncode: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def artifact(self) -> ModelArtifact:
        return ModelArtifact.read(self.opt_ml.model_dir)

    def failure(self) -> str:
        path = self.opt_ml.failure_file
        return path.read_text().splitlines()[0] if path.is_file() else f"exit code {self.returncode}"


def new_run_dir(workdir: Path, kind: str, name: str | None = None) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = workdir / "runs" / (name or f"{kind}-{stamp}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_training(run_dir: Path, channels: dict[str, Path], hyperparameters: dict[str, str], *,
                 runner: Runner = PROCESS,
                 on_line: Callable[[str], None] | None = None,
                 env: dict[str, str] | None = None,
                 cpus: set[int] | None = None,
                 feature_cache: Path | None = None) -> RunResult:
    """Lay out ``run_dir/opt_ml`` and run ``train`` there with ``runner``; every output line goes
    to ``run_dir/train.log`` and to ``on_line`` (default: stdout). ``cpus`` pins the run to those
    cores (train sizes its threads to them). ``feature_cache``: a folder where runs share the
    frozen backbone's features (finetune=head). If ``on_line`` raises, the run is stopped and the
    exception goes on."""
    opt = OptML(run_dir / "opt_ml")
    opt.write_inputs(channels, hyperparameters, mount=runner.in_container)
    opt.prepare_outputs()  # owned by this user, also when a container engine mounts them
    if feature_cache is not None:
        feature_cache.mkdir(parents=True, exist_ok=True)  # this user's, also when mounted
    emit = on_line or (lambda line: print(line, flush=True))
    name = runner.container_name(run_dir)
    started = time.monotonic()
    with open(run_dir / "train.log", "a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            runner.command(opt, channels, name=name, cpus=cpus, feature_cache=feature_cache),
            env={**os.environ, **runner.environment(feature_cache), **(env or {}), BASE_DIR: str(opt.root),
                 "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus and not runner.in_container else None,
        )
        with _active_lock:
            _active[proc.pid] = (runner, proc, name)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                emit(line.rstrip("\n"))
            proc.wait()
        except BaseException:
            runner.stop(proc, name)  # train stops at once on SIGTERM, its checkpoints kept
            raise
        finally:
            with _active_lock:
                _active.pop(proc.pid, None)
            runner.remove(name)
    return RunResult(run_dir, opt, proc.returncode, time.monotonic() - started)

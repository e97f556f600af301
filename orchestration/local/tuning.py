"""Local hyperparameter tuning: an Optuna study over the training program's own search space.

The counterpart of SageMaker's HyperparameterTuner with Bayesian search and early stopping:
a TPE sampler, and a median pruner fed by the ``valid_acc`` of every epoch line (parsed with
the package's metric regexes, as SageMaker's tuner reads them). Each trial is the real `train`
program in its own /opt/ml folder (:func:`orchestration.local.training.run_training`), in the image or
as a process; trials run in parallel threads, one process or container each, on its own cores.
The study is kept in SQLite, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dogbreed.contract.hyperparameters import Tune, format_value, value_type
from dogbreed.contract.metrics import OBJECTIVE_METRIC, is_final, parse_epoch, parse_metrics

from ..tuning import TuningSetup, write_results
from .runner import PROCESS, Runner
from .training import run_training


def cpu_slots(parallel: int) -> queue.Queue:
    """The machine's cores split into ``parallel`` groups, one per concurrent trial."""
    cores = sorted(os.sched_getaffinity(0))
    slots: queue.Queue = queue.Queue()
    for i in range(parallel):
        group = set(cores[i::parallel]) or set(cores)
        slots.put(group)
    return slots


def as_text(value: Any) -> str:
    """A tuned value as hyperparameters.json holds it; floats to 4 significant digits."""
    return format_value(float(f"{value:.4g}") if isinstance(value, float) else value)


def suggest(trial: Any, space: dict[str, Tune]) -> dict[str, str]:
    """One point of ``space`` as hyperparameters.json values (strings)."""
    values: dict[str, str] = {}
    for name, tune in space.items():
        if tune.values is not None:
            value = trial.suggest_categorical(name, list(tune.values))
        elif value_type(name) == "int":
            value = trial.suggest_int(name, int(tune.low), int(tune.high), log=tune.log)
        else:
            value = trial.suggest_float(name, tune.low, tune.high, log=tune.log)
        values[name] = as_text(value)
    return values


class _Pruned(Exception):
    pass


def _open_study(folder: Path, setup: TuningSetup, emit: Callable[[str], None]) -> tuple[Any, int]:
    """The study in ``folder`` (created, or resumed), and how many trials it still needs."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=setup.name, storage=f"sqlite:///{folder / 'study.db'}", load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=setup.seed, n_startup_trials=min(5, setup.trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    # A trial still "running" belongs to a dogctl that is gone (the caller holds the study): it
    # was stopped before it could say so. Failed trials (an error, Ctrl-C, SIGTERM) do not count:
    # others replace them.
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)
        emit(f"tune: trial-{stale.number:03d} was left running by a stopped dogctl: counted as failed")
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if study.trials:
        emit(f"tune: resuming study {setup.name!r}: {len(done)} of {setup.trials} trials done")
    return study, setup.trials - len(done)


def run_study(workdir: Path, channels: dict[str, Path], setup: TuningSetup, *,
              runner: Runner = PROCESS, emit: Callable[[str], None] = print,
              feature_cache: Path | None = None) -> dict[str, Any]:
    """Run (or resume) the study; write the best hyperparameters and tuning.json; return the summary.
    ``feature_cache``: the folder where trials share the frozen backbone's features."""
    import optuna

    folder = workdir / "tuning" / setup.name
    study, remaining = _open_study(folder, setup, emit)
    space = setup.space()
    slots = cpu_slots(setup.parallel)
    lock = threading.Lock()

    def objective(trial: Any) -> float:
        values = {**setup.trial_hyperparameters(), **suggest(trial, space)}
        label = f"trial-{trial.number:03d}"
        with lock:
            emit(f"tune: {label} starts: " + " ".join(f"{k}={values[k]}" for k in space))
        run_dir = folder / label
        run_dir.mkdir(parents=True, exist_ok=True)
        best: dict[str, float | None] = {"value": None, "final": None}

        def on_line(line: str) -> None:
            if is_final(line):  # the kept epoch's valid_acc, as SageMaker's tuner reads it last
                best["final"] = parse_metrics(line).get(OBJECTIVE_METRIC)
            parsed = parse_epoch(line)
            if parsed is None:
                return
            epoch, found = parsed
            value = found.get(OBJECTIVE_METRIC)
            if value is None:
                return
            best["value"] = max(value, best["value"] or value)
            trial.report(value, epoch)
            with lock:
                emit(f"tune: {label} epoch {epoch}: {OBJECTIVE_METRIC}={value:.4f}")
            if trial.should_prune():
                raise _Pruned

        cpus = slots.get()
        try:
            result = run_training(run_dir, channels, values, runner=runner, on_line=on_line,
                                  cpus=cpus, feature_cache=feature_cache)
        except _Pruned:
            with lock:
                emit(f"tune: {label} pruned (below the median of earlier trials)")
            raise optuna.TrialPruned() from None
        finally:
            slots.put(cpus)
        if not result.ok:
            raise RuntimeError(f"{label} failed: {result.failure()} (log {run_dir / 'train.log'})")
        value = best["final"] if best["final"] is not None else best["value"]
        with lock:
            emit(f"tune: {label} done: {OBJECTIVE_METRIC}={value:.4f} in {result.seconds:.0f}s")
        return value

    if remaining > 0:
        study.optimize(objective, n_trials=remaining, n_jobs=setup.parallel, catch=(RuntimeError,))
    return summarize(study, setup, folder)


def summarize(study: Any, setup: TuningSetup, folder: Path) -> dict[str, Any]:
    trials = []
    for t in study.trials:
        values = {**dict(setup.fixed), **{k: as_text(v) for k, v in t.params.items()}}
        trials.append({"name": f"trial-{t.number:03d}", "status": t.state.name.lower(),
                       "objective": t.value, "hyperparameters": values,
                       "epochs_reported": len(t.intermediate_values)})
    completed = [t for t in trials if t["status"] == "complete" and t["objective"] is not None]
    best = max(completed, key=lambda t: t["objective"]) if completed else None
    return write_results(folder, {"study": setup.name, "objective": OBJECTIVE_METRIC, "trials": trials,
                                  "best": best})



"""SageMaker hyperparameter tuning: the HyperparameterTuner of the reference write-ups, built from
the training program's own schema and metric regexes, and its results in the local study's shape.

The tuner's training jobs run without the Debugger (a tuning job's training definition has no
place for hooks or rules); the chosen hyperparameters then go to ``dogctl train --sagemaker``,
which runs with them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dogbreed.contract.hyperparameters import Tune, describe_tune, format_value, value_type
from dogbreed.contract.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC, OBJECTIVE_TYPE

from ..backend import Reporter, TuneResult
from ..tuning import TuningSetup, write_results
from .polling import RUNNING, poll
from .settings import AwsError, Settings
from .training import OFF, estimator

STRATEGY = "Bayesian"
EARLY_STOPPING = "Auto"


def parameter_ranges(space: dict[str, Tune]) -> dict[str, Any]:
    """The search space as the SDK's parameter ranges (log scales where the schema says so)."""
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter, IntegerParameter

    ranges: dict[str, Any] = {}
    for name, tune in space.items():
        scaling = "Logarithmic" if tune.log else "Auto"
        if tune.values is not None:
            ranges[name] = CategoricalParameter([format_value(v) for v in tune.values])
        elif value_type(name) == "int":
            ranges[name] = IntegerParameter(int(tune.low), int(tune.high), scaling_type=scaling)
        else:
            ranges[name] = ContinuousParameter(tune.low, tune.high, scaling_type=scaling)
    return ranges


def tuner(settings: Settings, setup: TuningSetup, *, session: Any) -> Any:
    """A HyperparameterTuner over ``setup``'s space: objective valid_acc (Maximize), Bayesian
    search, early stopping Auto; the fixed hyperparameters are every job's static ones."""
    from sagemaker.tuner import HyperparameterTuner

    base = estimator(settings, setup.trial_hyperparameters(), session=session, job_name=setup.name,
                     debugger=OFF, checkpoints=False)
    return HyperparameterTuner(
        base,
        objective_metric_name=OBJECTIVE_METRIC,
        hyperparameter_ranges=parameter_ranges(setup.space()),
        metric_definitions=list(METRIC_DEFINITIONS),
        strategy=STRATEGY,
        objective_type=OBJECTIVE_TYPE,
        max_jobs=setup.trials,
        max_parallel_jobs=setup.parallel,
        early_stopping_type=EARLY_STOPPING,
    )


def submit(settings: Settings, session: Any, setup: TuningSetup, name: str, channels: dict[str, str],
           report: Reporter) -> None:
    """Start the tuning job ``name`` (not waiting); its trials train on train and valid, not test."""
    job = tuner(settings, setup, session=session)
    job.fit({k: v for k, v in channels.items() if k != "test"}, job_name=name, wait=False)
    report.line(f"tune: SageMaker tuning job {name} submitted: {setup.trials} jobs, {setup.parallel} in "
                f"parallel, {STRATEGY} search, early stopping {EARLY_STOPPING}, objective valid_acc, on "
                f"{settings.train_instance_type}")
    for param, tune in setup.space().items():
        report.line(f"  {param}: {describe_tune(tune)}")


def collect(client: Any, name: str, static: dict[str, str], folder: Path, report: Reporter) -> TuneResult:
    """Wait for the tuning job to end, then write its results (tuning.json, the best file)."""
    with report.bar("tune", unit="jobs") as bar:
        job = wait(client, name, lambda done, total, text: bar.advance_to(done, total))
    summary = summarize(job, trials(client, name), static, folder)
    return TuneResult(name, headline=f"SageMaker tuning job {name} {summary['status']}",
                      objective=summary["objective"], trials=tuple(summary["trials"]), best=summary["best"],
                      best_file=Path(summary["best_file"]) if summary["best_file"] else None)


def describe(client: Any, name: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    try:
        return client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except ClientError as exc:
        raise AwsError(f"tuning job {name!r}: {exc}") from exc


def wait(client: Any, name: str, progress: Callable[[int, int, str], None],
         poll_every: float | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Poll the tuning job until it ends; ``progress(finished_jobs, max_jobs, counters)``."""

    def report(job: dict[str, Any], _seconds: float) -> None:
        counters = job.get("TrainingJobStatusCounters", {})
        finished = sum(counters.get(k, 0) for k in ("Completed", "NonRetryableError", "Stopped"))  # API keys
        total = job["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"]
        progress(finished, total, ", ".join(f"{k} {v}" for k, v in counters.items() if v))

    def finished(job: dict[str, Any]) -> bool:
        return job["HyperParameterTuningJobStatus"] not in RUNNING

    return poll(lambda: describe(client, name), finished, report, what=f"tuning job {name!r}",
                every=poll_every, timeout=timeout,
                resume_hint=f"`dogctl tune --sagemaker --attach {name}` waits again")


def trials(client: Any, name: str) -> list[dict[str, Any]]:
    """Every training job of the tuning job, as SageMaker lists them."""
    summaries: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"HyperParameterTuningJobName": name, "MaxResults": 100}
    while True:
        page = client.list_training_jobs_for_hyper_parameter_tuning_job(**kwargs)
        summaries += page.get("TrainingJobSummaries", [])
        if not page.get("NextToken"):
            return summaries
        kwargs["NextToken"] = page["NextToken"]


def summarize(job: dict[str, Any], summaries: list[dict[str, Any]], static: dict[str, str],
              folder: Path) -> dict[str, Any]:
    """The tuning job in the local study's shape (tuning.json, the best-hyperparameters file)."""
    rows = []
    for s in summaries:
        metric = s.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        tuned = {k: v.strip('"') for k, v in s.get("TunedHyperParameters", {}).items()}
        rows.append({"name": s["TrainingJobName"], "status": s["TrainingJobStatus"].lower(),
                     "objective": metric.get("Value"), "hyperparameters": {**static, **tuned}})
    best_name = (job.get("BestTrainingJob") or {}).get("TrainingJobName")
    best = next((r for r in rows if r["name"] == best_name), None)
    if best is None:
        scored = [r for r in rows if r["objective"] is not None]
        best = max(scored, key=lambda r: r["objective"]) if scored else None
    return write_results(folder, {"study": job["HyperParameterTuningJobName"],
                                  "objective": OBJECTIVE_METRIC,
                                  "status": job["HyperParameterTuningJobStatus"],
                                  "trials": rows, "best": best})

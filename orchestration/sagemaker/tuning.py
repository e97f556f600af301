"""SageMaker hyperparameter tuning: the tuning job of the reference write-ups as a
CreateHyperParameterTuningJob request (sagemaker-core shapes, see :mod:`.api`), built from the
training program's own schema and metric regexes, and its results in the local study's shape.

The tuning job's training jobs run without the Debugger (a tuning job's training definition has
no place for hooks or rules); the chosen hyperparameters then go to ``dogctl train --sagemaker``,
which runs with them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dogbreed.contract.hyperparameters import Tune, describe_tune, format_value, parse, value_type
from dogbreed.contract.metrics import OBJECTIVE_METRIC, OBJECTIVE_TYPE

from ..backend import Reporter, TuneResult
from ..tuning import TuningSetup, write_results
from . import api
from .polling import RUNNING, poll
from .settings import AwsError, Settings
from .training import MAX_RUN, algorithm, input_channels, resources

STRATEGY = "Bayesian"
EARLY_STOPPING = "Auto"


def parameter_ranges(space: dict[str, Tune]) -> Any:
    """The search space as SageMaker's ParameterRanges (log scales where the schema says so)."""
    from sagemaker.core import shapes

    ranges: dict[str, list[Any]] = {"continuous": [], "integer": [], "categorical": []}
    for name, tune in space.items():
        scaling = "Logarithmic" if tune.log else "Auto"
        if tune.values is not None:
            ranges["categorical"].append(shapes.CategoricalParameterRange(
                name=name, values=[format_value(v) for v in tune.values]))
        elif value_type(name) == "int":
            ranges["integer"].append(shapes.IntegerParameterRange(
                name=name, min_value=str(int(tune.low)), max_value=str(int(tune.high)), scaling_type=scaling))
        else:
            ranges["continuous"].append(shapes.ContinuousParameterRange(
                name=name, min_value=format_value(tune.low), max_value=format_value(tune.high),
                scaling_type=scaling))
    return shapes.ParameterRanges(**{f"{kind}_parameter_ranges": found
                                     for kind, found in ranges.items() if found})


def tuning_request(settings: Settings, setup: TuningSetup, name: str, channels: dict[str, str],
                   keep_alive: int | None = None) -> api.Request:
    """CreateHyperParameterTuningJob over ``setup``'s space: objective valid_acc (Maximize),
    Bayesian search, early stopping Auto; the fixed hyperparameters are every job's static ones.
    Its trials train on train and valid, not test, and share no checkpoint folder."""
    from sagemaker.core import shapes

    static = setup.trial_hyperparameters()
    parse(static)  # a bad value fails here, not in every trial
    return {
        "hyper_parameter_tuning_job_name": name,
        "hyper_parameter_tuning_job_config": shapes.HyperParameterTuningJobConfig(
            strategy=STRATEGY, training_job_early_stopping_type=EARLY_STOPPING,
            hyper_parameter_tuning_job_objective=shapes.HyperParameterTuningJobObjective(
                type=OBJECTIVE_TYPE, metric_name=OBJECTIVE_METRIC),
            resource_limits=shapes.ResourceLimits(max_number_of_training_jobs=setup.trials,
                                                  max_parallel_training_jobs=setup.parallel),
            parameter_ranges=parameter_ranges(setup.space())),
        "training_job_definition": shapes.HyperParameterTrainingJobDefinition(
            algorithm_specification=algorithm(settings.need("image"), tuning=True),
            role_arn=settings.need("role"),
            static_hyper_parameters=static,
            input_data_config=input_channels({k: v for k, v in channels.items() if k != "test"}),
            output_data_config=shapes.OutputDataConfig(s3_output_path=settings.s3_uri("jobs")),
            resource_config=resources(settings, keep_alive=keep_alive),
            stopping_condition=shapes.StoppingCondition(max_runtime_in_seconds=MAX_RUN)),
    }


def submit(settings: Settings, client: Any, setup: TuningSetup, name: str, channels: dict[str, str],
           report: Reporter, keep_alive: int | None = None) -> None:
    """Start the tuning job ``name`` (not waiting); ``keep_alive``: each trial's warm pool."""
    from botocore.exceptions import ClientError

    try:
        request = tuning_request(settings, setup, name, channels, keep_alive)
        api.create(client, "HyperParameterTuningJob", request, tags=settings.resource_tags())
    except ClientError as exc:
        raise AwsError(f"SageMaker refused the tuning job {name!r}: {exc}") from exc
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

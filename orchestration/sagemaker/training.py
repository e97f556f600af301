"""SageMaker training jobs with the sagemaker SDK (v2): the Estimator the reference write-ups
built by hand, from the project's single sources of truth.

- hyperparameters: checked by the training program's own schema before anything is sent;
- metric definitions: :data:`dogbreed.contract.metrics.METRIC_DEFINITIONS`;
- what the Debugger saves: :func:`dogbreed.debugger.hook.collections`;
- rules: SageMaker's built-in ones, by the names :data:`dogbreed.debugger.verdicts.RULE_NAMES` evaluates
  locally, plus ProfilerReport.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dogbreed.contract.hyperparameters import parse
from dogbreed.contract.metrics import METRIC_DEFINITIONS
from dogbreed.debugger.hook import collections

from ..backend import Reporter, RuleStatus, TrainResult
from .polling import RUNNING, poll
from .s3 import download_prefix, download_tar
from .settings import AwsError, Settings

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
PROFILER_INTERVAL_MS = 500
DEBUG_SAVE_INTERVAL = 100
# The Debugger rules of the reference write-ups, by their rule_configs names.
TENSOR_RULES = ("vanishing_gradient", "poor_weight_initialization", "exploding_tensor", "overfit",
                "overtraining", "loss_not_decreasing")
PROFILER_RULES = ("LowGPUUtilization", "ProfilerReport")
# Where the Debugger runs: in the job's own container (the default), also in SageMaker's managed
# rule containers (accounts opened before 2026-07-30), or nowhere.
CONTAINER, MANAGED, OFF = "container", "managed", "off"
DEBUGGER_MODES = (CONTAINER, MANAGED, OFF)
# The SDK's configuration for every session of ours: its telemetry (calls to AWS) off.
NO_TELEMETRY = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


class _SdkNoise(logging.Filter):
    """Drops the SDK's warning that a tuner's (never fitted) estimator has no finished job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No finished training job found" not in record.getMessage()


logging.getLogger("sagemaker.estimator").addFilter(_SdkNoise())
logging.getLogger("sagemaker.config").setLevel(logging.WARNING)


def session(settings: Settings) -> Any:
    """A sagemaker.Session on the settings' AWS session, the SDK's telemetry off."""
    import sagemaker

    return sagemaker.Session(
        boto_session=settings.session(), default_bucket=settings.bucket,  # needed to train, not to stop
        sagemaker_config=NO_TELEMETRY,
    )


def collection_configs(interval: int = DEBUG_SAVE_INTERVAL) -> list[Any]:
    """The managed path's collections: whole tensors, which SageMaker's rule containers expect."""
    from sagemaker.debugger import CollectionConfig

    return [CollectionConfig(name=name, parameters=params)
            for name, params in collections(interval, full=True).items()]


def debugger_config(s3_output: str, interval: int = DEBUG_SAVE_INTERVAL) -> Any:
    from sagemaker.debugger import DebuggerHookConfig

    return DebuggerHookConfig(s3_output_path=s3_output, collection_configs=collection_configs(interval))


def rules(interval: int = DEBUG_SAVE_INTERVAL) -> list[Any]:
    """The built-in rules. Each carries our collections: the SDK merges a rule's own collection
    settings into the hook's (the rules' defaults would save the loss every 500 steps only)."""
    from sagemaker.debugger import ProfilerRule, Rule, rule_configs

    tensor = [Rule.sagemaker(getattr(rule_configs, name)(), collections_to_save=collection_configs(interval))
              for name in TENSOR_RULES]
    profiler = [ProfilerRule.sagemaker(getattr(rule_configs, name)()) for name in PROFILER_RULES]
    return tensor + profiler


def estimator(settings: Settings, hyperparameters: dict[str, str], *, session: Any, job_name: str,
              instance_count: int = 1, spot: bool = False, max_run: int = 24 * 3600,
              debugger: str = CONTAINER, checkpoints: bool = True) -> Any:
    """An Estimator for the project image, checkpoints in S3 under ``job_name`` (fit it with that
    name); ``spot`` uses managed spot training (the checkpoints make it resumable).

    ``debugger``: :data:`CONTAINER` (the default) runs the hook, the rules and the report inside
    the job (the ``debugger`` hyperparameter) and sends SageMaker no DebugHookConfig, rules,
    ProfilerConfig or profiler rules: SageMaker Debugger is closed to accounts opened since
    2026-07-30. :data:`MANAGED` adds SageMaker's own hook configuration, built-in rules and profiler
    (accounts that still have them; the in-container analysis runs too). :data:`OFF`: neither. A
    tuner's estimator has no debugger and no checkpoints (its jobs would share one folder)."""
    from sagemaker.debugger import ProfilerConfig

    if debugger not in DEBUGGER_MODES:
        raise AwsError(f"debugger {debugger!r}: use one of {', '.join(DEBUGGER_MODES)}")
    if debugger != OFF:
        hyperparameters = {"debugger": "true", **hyperparameters}
    parse(hyperparameters)  # a bad value fails here, not minutes into a paid job
    base = settings.s3_uri("jobs")
    managed = debugger == MANAGED
    return _estimator_class()(
        image_uri=settings.need("image"),
        role=settings.need("role"),
        instance_count=instance_count,
        instance_type=settings.train_instance_type,
        hyperparameters=hyperparameters,
        metric_definitions=list(METRIC_DEFINITIONS),
        output_path=base,
        checkpoint_s3_uri=settings.s3_uri("checkpoints", job_name) if checkpoints else None,
        base_job_name="dogbreed",
        use_spot_instances=spot,
        max_run=max_run,
        max_wait=max_run * 2 if spot else None,
        debugger_hook_config=debugger_config(base) if managed else False,
        profiler_config=(ProfilerConfig(s3_output_path=base,
                                        system_monitor_interval_millis=PROFILER_INTERVAL_MS)
                         if managed else None),
        disable_profiler=not managed,
        rules=rules() if managed else None,
        sagemaker_session=session,
    )


def _estimator_class() -> type:
    """Made on first use: importing the SDK takes seconds."""
    from sagemaker.estimator import Estimator

    class NoProfilerEstimator(Estimator):
        """The SDK's Estimator, except that a job without the profiler sends no ProfilerConfig:
        the SDK sends ``{"DisableProfiler": true}``, naming a service new accounts do not have."""

        def _prepare_profiler_for_training(self) -> None:
            super()._prepare_profiler_for_training()
            if self.disable_profiler and not self.profiler_rule_configs:
                self.profiler_config = None

    return NoProfilerEstimator


def submit(settings: Settings, session: Any, name: str, hyperparameters: dict[str, str],
           channels: dict[str, str], *, spot: bool, debugger: str, report: Reporter) -> None:
    """Start the training job ``name`` on ``channels`` (not waiting for it)."""
    job = estimator(settings, hyperparameters, session=session, job_name=name, spot=spot, debugger=debugger)
    job.fit(channels, wait=False, job_name=name)
    report.line(f"train: SageMaker training job {name} submitted ({settings.train_instance_type}"
                f"{', spot' if spot else ''}); channels {json.dumps(channels)}")
    report.line(f"train: https://{session.boto_region_name}.console.aws.amazon.com/sagemaker/home"
                f"#/jobs/{name}")


def describe_training(client: Any, name: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    try:
        return client.describe_training_job(TrainingJobName=name)
    except ClientError as exc:
        raise AwsError(f"training job {name!r}: {exc}") from exc


def rule_statuses(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [*job.get("DebugRuleEvaluationStatuses", []), *job.get("ProfilerRuleEvaluationStatuses", [])]


def wait_training(client: Any, name: str, emit: Callable[[str], None], poll_every: float | None = None,
                  rules_timeout: float = 3600) -> dict[str, Any]:
    """Follow the job until it ends and its rules have given their verdicts, emitting each new
    status (SageMaker's secondary statuses: Starting, Downloading, Training, Uploading, ...)."""
    seen: set[tuple[str, str]] = set()
    ended: list[float] = []  # when the job itself ended (its rules may still run)

    def progress(job: dict[str, Any], seconds: float) -> None:
        for step in job.get("SecondaryStatusTransitions", []):
            key = (step["Status"], step.get("StatusMessage", ""))
            if key not in seen:
                seen.add(key)
                emit(f"{seconds:6.0f}s  {step['Status']}: {step.get('StatusMessage', '')}")
        if job["TrainingJobStatus"] not in RUNNING and not ended:
            ended.append(seconds)

    def finished(job: dict[str, Any]) -> bool:
        if job["TrainingJobStatus"] in RUNNING:
            return False
        running = [r["RuleConfigurationName"] for r in rule_statuses(job)
                   if r.get("RuleEvaluationStatus") in RUNNING]
        if running and time.monotonic() - started > ended[0] + rules_timeout:
            emit(f"rules still running after {rules_timeout:.0f}s: {', '.join(running)}")
            return True
        return not running

    started = time.monotonic()
    return poll(lambda: describe_training(client, name), finished, progress,
                what=f"training job {name!r}", every=poll_every)


def collect(session: Any, job: dict[str, Any], dest: Path, report: Reporter) -> TrainResult:
    """A job that ended: its outputs downloaded to ``dest``, its report written there, its verdicts."""
    from dogbreed.debugger.report import write_report

    status = job["TrainingJobStatus"]
    with report.bar("train: downloading outputs", unit="parts"):
        found = download(session, job, dest)
    rules = tuple(RuleStatus(r["RuleConfigurationName"], r.get("RuleEvaluationStatus", "?"),
                             r.get("StatusDetails", "")) for r in rule_statuses(job))
    return TrainResult(
        job["TrainingJobName"], ok=status == "Completed", status=status,
        failure=str(job.get("FailureReason")) if status == "Failed" else None,
        model_dir=dest / "model" if "model" in found else None,
        report=write_report(dest) if "model" in found else None,
        metrics={m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])},
        rules=rules, downloads=found, outputs=dest, verdicts=job_verdicts(dest))


def job_verdicts(dest: Path) -> tuple[Any, ...]:
    """The verdicts the job's own rules wrote to its output (the in-container Debugger); none when
    the debugger was off, or the job wrote no model."""
    from dogbreed.contract.jobdir import JobDir, JobDirError
    from dogbreed.debugger.verdicts import load_verdicts

    try:
        return tuple(load_verdicts(JobDir.find(dest)) or ())
    except JobDirError:
        return ()


def download(session: Any, job: dict[str, Any], dest: Path) -> dict[str, str]:
    """A finished job's model, output data, Debugger tensors, profiler and rule outputs, in the
    layout `dogctl report` reads; what was found, by part."""
    s3 = session.boto_session.client("s3")
    name = job["TrainingJobName"]
    found: dict[str, str] = {}
    model_uri = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if model_uri and download_tar(s3, model_uri, dest / "model"):
        found["model"] = model_uri
    output_uri = model_uri and model_uri.rsplit("/", 1)[0] + "/output.tar.gz"
    if output_uri and download_tar(s3, output_uri, dest / "output" / "data"):
        found["output"] = output_uri
    parts = {"debug-output": job.get("DebugHookConfig", {}).get("S3OutputPath"),
             "profiler-output": job.get("ProfilerConfig", {}).get("S3OutputPath"),
             "rule-output": job.get("DebugHookConfig", {}).get("S3OutputPath")}
    for part, base in parts.items():
        if base:
            uri = f"{base.rstrip('/')}/{name}/{part}"
            if download_prefix(s3, uri, dest / part):
                found[part] = uri
    return found


def stop(client: Any, name: str) -> tuple[str, str | None]:
    """Stop the training job, or else the tuning job, named ``name``: (which kind, the status it
    had ended with already, or None when it is stopping now)."""
    from botocore.exceptions import ClientError

    calls = (("training job", "TrainingJobStatus", lambda: client.describe_training_job(TrainingJobName=name),
              lambda: client.stop_training_job(TrainingJobName=name)),
             ("tuning job", "HyperParameterTuningJobStatus",
              lambda: client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
              lambda: client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)))
    for kind, key, describe, stop_call in calls:
        try:
            status = describe()[key]
        except ClientError:
            continue  # not a job of this kind
        if status not in RUNNING:
            return kind, status
        try:
            stop_call()
        except ClientError as exc:
            raise AwsError(f"SageMaker refused to stop {kind} {name!r}: {exc}") from exc
        return kind, None
    raise AwsError(f"no training or tuning job named {name!r} in this account and region")

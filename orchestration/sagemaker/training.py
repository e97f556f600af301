"""SageMaker training jobs as CreateTrainingJob requests (sagemaker-core shapes, see :mod:`.api`),
built from the project's single sources of truth:

- hyperparameters: checked by the training program's own schema before anything is sent;
- metric definitions: :data:`dogbreed.contract.metrics.METRIC_DEFINITIONS`;
- what the Debugger saves: :func:`dogbreed.debugger.hook.collections`;
- rules: SageMaker's built-in ones, by the names :data:`dogbreed.debugger.verdicts.RULE_NAMES` evaluates
  locally, plus ProfilerReport.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dogbreed.contract.hyperparameters import parse
from dogbreed.contract.metrics import METRIC_DEFINITIONS
from dogbreed.debugger.hook import collections

from ..backend import Reporter, RuleStatus, TrainResult
from . import api
from .polling import RUNNING, poll
from .s3 import download_prefix, download_tar
from .settings import AwsError, Settings

PROFILER_INTERVAL_MS = 500
DEBUG_SAVE_INTERVAL = 100
VOLUME_GB = 30  # the dataset, its decoded cache and checkpoints
MAX_RUN = 24 * 3600  # a job's (and each tuning trial's) longest run, in seconds
# The Debugger rules of the reference write-ups, by their rule_configs names.
TENSOR_RULES = ("vanishing_gradient", "poor_weight_initialization", "exploding_tensor", "overfit",
                "overtraining", "loss_not_decreasing")
PROFILER_RULES = ("LowGPUUtilization", "ProfilerReport")
# Where the Debugger runs: in the job's own container (the default), also in SageMaker's managed
# rule containers (accounts opened before 2026-07-30), or nowhere.
CONTAINER, MANAGED, OFF = "container", "managed", "off"
DEBUGGER_MODES = (CONTAINER, MANAGED, OFF)


def algorithm(image: str, *, tuning: bool = False) -> Any:
    """The image, File input, and the metric regexes SageMaker reads from the job's log."""
    from sagemaker.core import shapes

    cls = shapes.HyperParameterAlgorithmSpecification if tuning else shapes.AlgorithmSpecification
    return cls(training_image=image, training_input_mode="File",
               metric_definitions=[shapes.MetricDefinition(name=d["Name"], regex=d["Regex"])
                                   for d in METRIC_DEFINITIONS])


def input_channels(channels: dict[str, str]) -> list[Any]:
    """One S3Prefix channel per split, copied whole to every instance."""
    from sagemaker.core import shapes

    def source(uri: str) -> Any:
        return shapes.DataSource(s3_data_source=shapes.S3DataSource(
            s3_data_type="S3Prefix", s3_uri=uri, s3_data_distribution_type="FullyReplicated"))

    return [shapes.Channel(channel_name=name, data_source=source(uri)) for name, uri in channels.items()]


def resources(settings: Settings, instance_count: int = 1, keep_alive: int | None = None) -> Any:
    """The instances; ``keep_alive``: seconds a warm pool keeps them after the job."""
    from sagemaker.core import shapes

    return shapes.ResourceConfig(instance_type=settings.train_instance_type, instance_count=instance_count,
                                 volume_size_in_gb=VOLUME_GB, keep_alive_period_in_seconds=keep_alive)


def hook_config(s3_output: str, interval: int = DEBUG_SAVE_INTERVAL) -> Any:
    """The managed path's hook: whole tensors (SageMaker's rule containers expect them), saved at
    the steps the local runs save (the rules' own defaults would save the loss every 500 steps)."""
    from sagemaker.core import shapes

    return shapes.DebugHookConfig(s3_output_path=s3_output, collection_configurations=[
        shapes.CollectionConfiguration(collection_name=name, collection_parameters=params)
        for name, params in collections(interval, full=True).items()])


def rule_configurations(region: str) -> dict[str, list[Any]]:
    """The built-in tensor and profiler rules, with the rule evaluator image of ``region``."""
    from sagemaker.core import shapes
    from sagemaker.core.debugger import ProfilerRule, Rule, get_rule_container_image_uri, rule_configs

    def shape(cls: type, config: dict[str, Any]) -> Any:
        return cls(rule_configuration_name=config["RuleConfigurationName"],
                   rule_evaluator_image=get_rule_container_image_uri(config["RuleConfigurationName"], region),
                   rule_parameters=config.get("RuleParameters"))

    return {"debug_rule_configurations": [
                shape(shapes.DebugRuleConfiguration,
                      Rule.sagemaker(getattr(rule_configs, name)()).to_debugger_rule_config_dict())
                for name in TENSOR_RULES],
            "profiler_rule_configurations": [
                shape(shapes.ProfilerRuleConfiguration,
                      ProfilerRule.sagemaker(getattr(rule_configs, name)()).to_profiler_rule_config_dict())
                for name in PROFILER_RULES]}


def managed_debugger(base: str, region: str) -> api.Request:
    """Hook, built-in rules and profiler: what accounts that still have SageMaker Debugger get."""
    from sagemaker.core import shapes

    return {"debug_hook_config": hook_config(base),
            "profiler_config": shapes.ProfilerConfig(s3_output_path=base,
                                                     profiling_interval_in_milliseconds=PROFILER_INTERVAL_MS),
            **rule_configurations(region)}


def training_request(settings: Settings, hyperparameters: dict[str, str], channels: dict[str, str], *,
                     job_name: str, region: str, instance_count: int = 1, spot: bool = False,
                     max_run: int = MAX_RUN, debugger: str = CONTAINER, checkpoints: bool = True,
                     keep_alive: int | None = None) -> api.Request:
    """CreateTrainingJob for the project image on ``channels``, checkpoints in S3 under
    ``job_name``; ``spot`` uses managed spot training (the checkpoints make it resumable).

    ``debugger``: :data:`CONTAINER` (the default) runs the hook, the rules and the report inside
    the job (the ``debugger`` hyperparameter) and sends SageMaker no DebugHookConfig, rules,
    ProfilerConfig or profiler rules: SageMaker Debugger is closed to accounts opened since
    2026-07-30. :data:`MANAGED` adds SageMaker's own hook configuration, built-in rules and profiler
    (accounts that still have them; the in-container analysis runs too). :data:`OFF`: neither.
    ``keep_alive``: a warm pool (not with spot instances: SageMaker allows one or the other)."""
    from sagemaker.core import shapes

    if debugger not in DEBUGGER_MODES:
        raise AwsError(f"debugger {debugger!r}: use one of {', '.join(DEBUGGER_MODES)}")
    if spot and keep_alive:
        raise AwsError("SageMaker keeps no warm pool of spot instances: drop --spot or --keep-alive")
    if debugger != OFF:
        hyperparameters = {"debugger": "true", **hyperparameters}
    parse(hyperparameters)  # a bad value fails here, not minutes into a paid job
    base = settings.s3_uri("jobs")
    request: api.Request = {
        "training_job_name": job_name,
        "role_arn": settings.need("role"),
        "algorithm_specification": algorithm(settings.need("image")),
        "hyper_parameters": hyperparameters,
        "input_data_config": input_channels(channels),
        "output_data_config": shapes.OutputDataConfig(s3_output_path=base),
        "resource_config": resources(settings, instance_count, keep_alive),
        "stopping_condition": shapes.StoppingCondition(
            max_runtime_in_seconds=max_run, max_wait_time_in_seconds=max_run * 2 if spot else None),
        "enable_managed_spot_training": spot or None,
    }
    if checkpoints:
        request["checkpoint_config"] = shapes.CheckpointConfig(
            s3_uri=settings.s3_uri("checkpoints", job_name))
    if debugger == MANAGED:
        request.update(managed_debugger(base, region))
    return request  # None values: unset (api.as_api leaves them out)


def submit(settings: Settings, client: Any, name: str, hyperparameters: dict[str, str],
           channels: dict[str, str], *, spot: bool, debugger: str, report: Reporter,
           keep_alive: int | None = None) -> None:
    """Start the training job ``name`` on ``channels`` (not waiting for it)."""
    from botocore.exceptions import ClientError

    region = client.meta.region_name
    request = training_request(settings, hyperparameters, channels, job_name=name, region=region,
                               spot=spot, debugger=debugger, keep_alive=keep_alive)
    try:
        api.create(client, "TrainingJob", request, tags=settings.resource_tags())
    except ClientError as exc:
        raise AwsError(f"SageMaker refused the training job {name!r}: {exc}") from exc
    report.line(f"train: SageMaker training job {name} submitted ({settings.train_instance_type}"
                f"{', spot' if spot else ''}{f', kept warm {keep_alive} s after it' if keep_alive else ''}); "
                f"channels {json.dumps(channels)}")
    report.line(f"train: https://{region}.console.aws.amazon.com/sagemaker/home"
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


def collect(boto: Any, job: dict[str, Any], dest: Path, report: Reporter) -> TrainResult:
    """A job that ended: its outputs downloaded to ``dest``, its report written there, its verdicts."""
    from dogbreed.debugger.report import write_report

    status = job["TrainingJobStatus"]
    with report.bar("train: downloading outputs", unit="parts"):
        found = download(boto.client("s3"), job, dest)
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


def download(s3: Any, job: dict[str, Any], dest: Path) -> dict[str, str]:
    """A finished job's model, output data, Debugger tensors, profiler and rule outputs, in the
    layout `dogctl report` reads; what was found, by part."""
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

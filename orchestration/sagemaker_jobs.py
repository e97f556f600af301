"""SageMaker training jobs with the sagemaker SDK (v2): the Estimator the reference write-ups
built by hand, from the project's single sources of truth.

- hyperparameters: checked by the training program's own schema before anything is sent;
- metric definitions: :data:`dogbreed.metrics.METRIC_DEFINITIONS`;
- what the Debugger saves: :func:`dogbreed.debugger.collections`;
- rules: SageMaker's built-in ones, by the names :data:`dogbreed.rules.RULE_NAMES` evaluates
  locally, plus ProfilerReport.
"""

from __future__ import annotations

import os
from typing import Any

from dogbreed.debugger import collections
from dogbreed.hyperparameters import parse
from dogbreed.metrics import METRIC_DEFINITIONS

from .aws import Settings

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
PROFILER_INTERVAL_MS = 500
DEBUG_SAVE_INTERVAL = 100
# The Debugger rules of the reference write-ups, by their rule_configs names.
TENSOR_RULES = ("vanishing_gradient", "poor_weight_initialization", "exploding_tensor", "overfit",
                "overtraining", "loss_not_decreasing")
PROFILER_RULES = ("LowGPUUtilization", "ProfilerReport")


def session(settings: Settings) -> Any:
    """A sagemaker.Session on the settings' AWS session, the SDK's telemetry off."""
    import sagemaker

    return sagemaker.Session(
        boto_session=settings.session(), default_bucket=settings.need("bucket"),
        sagemaker_config={"SchemaVersion": "1.0",
                          "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}},
    )


def collection_configs(interval: int = DEBUG_SAVE_INTERVAL) -> list[Any]:
    from sagemaker.debugger import CollectionConfig

    return [CollectionConfig(name=name, parameters=params) for name, params in collections(interval).items()]


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
              instance_count: int = 1, spot: bool = False,
              max_run: int = 24 * 3600, debugger: bool = True) -> Any:
    """An Estimator for the project image with the debugger, the profiler, the rules and
    checkpoints in S3 under ``job_name`` (fit it with that name); ``spot`` uses managed spot
    training (the checkpoints make it resumable)."""
    from sagemaker.debugger import ProfilerConfig
    from sagemaker.estimator import Estimator

    parse(hyperparameters)  # a bad value fails here, not minutes into a paid job
    base = settings.s3_uri("jobs")
    return Estimator(
        image_uri=settings.need("image"),
        role=settings.need("role"),
        instance_count=instance_count,
        instance_type=settings.train_instance_type,
        hyperparameters=hyperparameters,
        metric_definitions=list(METRIC_DEFINITIONS),
        output_path=base,
        checkpoint_s3_uri=settings.s3_uri("checkpoints", job_name),
        base_job_name="dogbreed",
        use_spot_instances=spot,
        max_run=max_run,
        max_wait=max_run * 2 if spot else None,
        debugger_hook_config=debugger_config(base) if debugger else False,
        profiler_config=ProfilerConfig(s3_output_path=base,
                                       system_monitor_interval_millis=PROFILER_INTERVAL_MS),
        rules=rules() if debugger else None,
        sagemaker_session=session,
    )

"""What dogctl created on SageMaker that still runs or bills, found by the tags every create
carries (:meth:`.settings.Settings.resource_tags`): endpoints (with their autoscaling), training,
tuning and transform jobs
in progress, and warm pools kept after a job. Models and endpoint configs cost nothing and are
left out; so is everything not tagged by dogctl.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from ..backend import Resource
from .scaling import describe as describe_scaling
from .settings import MANAGED_BY, PREFIX_TAG

# (kind, list operation, its list key, the summary's name, ARN and status keys)
LISTS = (
    ("training job", "list_training_jobs", "TrainingJobSummaries", "TrainingJobName", "TrainingJobArn",
     "TrainingJobStatus"),
    ("tuning job", "list_hyper_parameter_tuning_jobs", "HyperParameterTuningJobSummaries",
     "HyperParameterTuningJobName", "HyperParameterTuningJobArn", "HyperParameterTuningJobStatus"),
    ("transform job", "list_transform_jobs", "TransformJobSummaries", "TransformJobName", "TransformJobArn",
     "TransformJobStatus"),
)
RUNNING = ("InProgress", "Stopping")  # still billed (each listed with StatusEquals: no job of the past)


def _epoch(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def _pages(client: Any, operation: str, key: str, **filters: Any) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate(**filters):
        yield from page.get(key, [])


class Finder:
    """Lists dogctl's resources with one SageMaker ``client``; ``prefix``: only those made under
    this settings prefix (None: every prefix)."""

    def __init__(self, client: Any, prefix: str | None, autoscaling: Any = None):
        self.client, self.prefix, self.autoscaling = client, prefix, autoscaling

    def ours(self, arn: str) -> str | None:
        """The prefix ``arn`` was made under, when dogctl made it (and under the prefix asked for)."""
        tags = {t["Key"]: t["Value"] for t in self.client.list_tags(ResourceArn=arn).get("Tags", [])}
        if tags.get(MANAGED_BY) != "dogctl" or self.prefix not in (None, tags.get(PREFIX_TAG)):
            return None
        return tags.get(PREFIX_TAG, "")

    def all(self) -> tuple[Resource, ...]:
        return (*self.endpoints(), *self.jobs(), *self.warm_pools())

    def endpoints(self) -> Iterator[Resource]:
        for summary in _pages(self.client, "list_endpoints", "Endpoints"):
            if summary["EndpointStatus"] == "Deleting" or not self.ours(summary["EndpointArn"]):
                continue
            yield Resource("endpoint", summary["EndpointName"], summary["EndpointStatus"],
                           self._hosts(summary["EndpointName"]), _epoch(summary.get("CreationTime")))

    def _hosts(self, name: str) -> str:
        """Each variant's instances now (after any scaling), or its serverless memory ("" when its
        config is gone, as a failed deployment's may be)."""
        from botocore.exceptions import ClientError

        try:
            endpoint = self.client.describe_endpoint(EndpointName=name)
            config = self.client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        except ClientError:
            return ""
        now = {v["VariantName"]: v for v in endpoint.get("ProductionVariants", [])}
        parts = []
        for variant in config["ProductionVariants"]:
            if "ServerlessConfig" in variant:
                parts.append(f"serverless {variant['ServerlessConfig']['MemorySizeInMB']} MB")
                continue
            count = now.get(variant["VariantName"], {}).get("CurrentInstanceCount",
                                                             variant.get("InitialInstanceCount"))
            parts.append(f"{count} x {variant.get('InstanceType')}")
        scaling = self.autoscaling and describe_scaling(self.autoscaling, name)
        return ", ".join(parts) + (", asynchronous" if config.get("AsyncInferenceConfig") else "") + (
            f", {scaling}" if scaling else "")

    def jobs(self) -> Iterator[Resource]:
        for kind, operation, key, name, arn, status in LISTS:
            for summary in (s for running in RUNNING
                            for s in _pages(self.client, operation, key, StatusEquals=running)):
                if summary[status] in RUNNING and self.ours(summary[arn]):
                    yield Resource(kind, summary[name], summary[status], self._instances(kind, summary[name]),
                                   _epoch(summary.get("CreationTime")))

    def _instances(self, kind: str, name: str) -> str:
        describe: dict[str, Callable[[], dict[str, Any]]] = {
            "training job": lambda: self.client.describe_training_job(TrainingJobName=name)["ResourceConfig"],
            "transform job": lambda: self.client.describe_transform_job(
                TransformJobName=name)["TransformResources"],
        }
        if kind not in describe:  # a tuning job: its trials are training jobs, listed as such
            return ""
        found = describe[kind]()
        return f"{found.get('InstanceCount')} x {found.get('InstanceType')}"

    def warm_pools(self) -> Iterator[Resource]:
        """Instances kept after a finished job (KeepAlivePeriodInSeconds), billed until reused or
        expired."""
        for summary in _pages(self.client, "list_training_jobs", "TrainingJobSummaries",
                              WarmPoolStatusEquals="Available"):
            pool = summary.get("WarmPoolStatus") or {}
            if pool.get("Status") != "Available" or not self.ours(summary["TrainingJobArn"]):
                continue
            job = self.client.describe_training_job(TrainingJobName=summary["TrainingJobName"])
            kept = job["ResourceConfig"].get("KeepAlivePeriodInSeconds")
            yield Resource("warm pool", summary["TrainingJobName"], "Available",
                           f"{job['ResourceConfig'].get('InstanceCount')} x "
                           f"{job['ResourceConfig'].get('InstanceType')}, kept {kept} s after the job",
                           _epoch(summary.get("TrainingEndTime")))

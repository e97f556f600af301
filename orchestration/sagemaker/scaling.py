"""Autoscaling of an endpoint's one variant with Application Auto Scaling: a scalable target
between MIN and MAX instances and a target-tracking policy, on invocations per instance
(real-time endpoints) or the backlog per instance (asynchronous ones, which may go down to 0;
from 0 a step policy on the ``HasBacklogWithoutCapacity`` alarm starts one instance, as
https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html describes).
``teardown`` removes all of it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..backend import DeployRequest
from .settings import AwsError

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
VARIANT = "AllTraffic"
SCALE_IN_COOLDOWN = 300  # seconds: slow to give instances back (a new one takes minutes to start)
SCALE_OUT_COOLDOWN = 60
DEFAULT_INVOCATIONS = 100  # per instance per minute: set it from a load test of your instance type
DEFAULT_BACKLOG = 5  # queued requests per instance, asynchronous endpoints


def resource_id(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT}"


def _target(endpoint: str) -> dict[str, str]:
    """What names the endpoint's variant to Application Auto Scaling."""
    return {"ServiceNamespace": NAMESPACE, "ResourceId": resource_id(endpoint),
            "ScalableDimension": DIMENSION}


@dataclass(frozen=True)
class Scaling:
    """MIN..MAX instances of an endpoint, tracking ``target`` (invocations per instance per minute,
    or for an asynchronous endpoint the backlog per instance)."""

    low: int
    high: int
    target: float | None = None
    asynchronous: bool = False

    def __post_init__(self) -> None:
        if self.low == 0 and not self.asynchronous:
            raise AwsError("only asynchronous endpoints scale to 0 instances (--async): use "
                           "--autoscale 1:MAX")
        if self.target is not None and self.target <= 0:
            raise AwsError(f"the scaling target must be above 0, got {self.target}")

    @property
    def metric(self) -> str:
        return "backlog per instance" if self.asynchronous else "invocations per instance per minute"

    @property
    def value(self) -> float:
        default = DEFAULT_BACKLOG if self.asynchronous else DEFAULT_INVOCATIONS
        return float(self.target if self.target is not None else default)

    def check_instances(self, count: int) -> None:
        """The endpoint starts with ``count`` instances: within the bounds (0 only ever later)."""
        if not max(self.low, 1) <= count <= self.high:
            raise AwsError(f"--instance-count {count} is outside --autoscale {self.low}:{self.high}")

    def describe(self) -> str:
        return f"scales {self.low}-{self.high} instances on {self.value:g} {self.metric}"

    def tracking(self, endpoint: str) -> dict[str, Any]:
        """The target-tracking configuration (Application Auto Scaling's API names)."""
        cooldowns = {"ScaleInCooldown": SCALE_IN_COOLDOWN, "ScaleOutCooldown": SCALE_OUT_COOLDOWN}
        if not self.asynchronous:
            return {"TargetValue": self.value, "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}, **cooldowns}
        return {"TargetValue": self.value, "CustomizedMetricSpecification": {
            "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": endpoint}], "Statistic": "Average"}, **cooldowns}


def requested(request: DeployRequest) -> Scaling | None:
    """The scaling ``request`` asks for, checked before anything is created; None without
    ``--autoscale``."""
    target, other = ((request.target_backlog, "--target-invocations") if request.use_async
                     else (request.target_invocations, "--target-backlog"))
    if not request.autoscale:
        if request.target_invocations or request.target_backlog:
            raise AwsError("--target-invocations and --target-backlog go with --autoscale MIN:MAX")
        return None
    if request.serverless_memory:
        raise AwsError("serverless endpoints scale by themselves: drop --autoscale or --serverless-memory")
    if (request.target_invocations if request.use_async else request.target_backlog) is not None:
        raise AwsError(f"{other} is for {'real-time' if request.use_async else 'asynchronous'} endpoints")
    scaling = Scaling(*request.autoscale, target, request.use_async)
    scaling.check_instances(request.instance_count)
    return scaling


def _names(endpoint: str) -> dict[str, str]:
    return {"tracking": f"{endpoint}-target-tracking", "from-zero": f"{endpoint}-from-zero",
            "alarm": f"{endpoint}-backlog-without-capacity"}


def apply(autoscaling: Any, cloudwatch: Any, endpoint: str, scaling: Scaling,
          tags: Mapping[str, str]) -> list[str]:
    """Register the variant and its policies (the endpoint is InService); what was set, for the user."""
    target = _target(endpoint)
    names = _names(endpoint)
    autoscaling.register_scalable_target(**target, MinCapacity=scaling.low, MaxCapacity=scaling.high,
                                         Tags=dict(tags))
    autoscaling.put_scaling_policy(**target, PolicyName=names["tracking"], PolicyType="TargetTrackingScaling",
                                   TargetTrackingScalingPolicyConfiguration=scaling.tracking(endpoint))
    done = [f"scalable target {resource_id(endpoint)} ({scaling.low}-{scaling.high} instances)",
            f"target-tracking policy {names['tracking']} ({scaling.value:g} {scaling.metric})"]
    if scaling.asynchronous and scaling.low == 0:
        one_more = {"AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average",
                    "Cooldown": SCALE_OUT_COOLDOWN,
                    "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}
        step = autoscaling.put_scaling_policy(**target, PolicyName=names["from-zero"],
                                              PolicyType="StepScaling",
                                              StepScalingPolicyConfiguration=one_more)
        cloudwatch.put_metric_alarm(
            AlarmName=names["alarm"], MetricName="HasBacklogWithoutCapacity", Namespace="AWS/SageMaker",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}], Statistic="Average", Period=60,
            EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing",
            AlarmActions=[step["PolicyARN"]],
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        done.append(f"step policy {names['from-zero']} and alarm {names['alarm']} (one instance when "
                    "requests wait with none running)")
    return done


def describe(autoscaling: Any, endpoint: str) -> str | None:
    """``scales MIN-MAX instances`` when the endpoint's variant is a scalable target, else None."""
    found = autoscaling.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[resource_id(endpoint)],
        ScalableDimension=DIMENSION)["ScalableTargets"]
    return f"scales {found[0]['MinCapacity']}-{found[0]['MaxCapacity']} instances" if found else None


def remove(autoscaling: Any, cloudwatch: Any, endpoint: str) -> list[str]:
    """Delete the endpoint's policies, alarm and scalable target (before the endpoint goes)."""
    target = _target(endpoint)
    removed = []
    policies = autoscaling.describe_scaling_policies(**target)["ScalingPolicies"]
    for policy in policies:
        if policy["ResourceId"] == target["ResourceId"]:
            autoscaling.delete_scaling_policy(**target, PolicyName=policy["PolicyName"])
            removed.append(f"scaling policy {policy['PolicyName']}")
    alarm = _names(endpoint)["alarm"]
    if cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]:
        cloudwatch.delete_alarms(AlarmNames=[alarm])
        removed.append(f"alarm {alarm}")
    if describe(autoscaling, endpoint):
        autoscaling.deregister_scalable_target(**target)
        removed.append(f"scalable target {target['ResourceId']}")
    return removed

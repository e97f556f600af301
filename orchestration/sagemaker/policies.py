"""The IAM documents of a dogctl account, in one place: the execution role's trust and
permissions, and what the caller (whoever runs dogctl and `make push`) needs. `dogctl init`
creates the role with them and prints them (``--dry-run``); the list of SageMaker actions is
checked against every SageMaker call in orchestration/ by tests/unit/dogctl/test_policies.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

VERSION = "2012-10-17"
EXECUTION_POLICY = "dogctl-execution"  # the role's inline policies: one per bucket and prefix
SAGEMAKER = "sagemaker.amazonaws.com"

# SageMaker actions dogctl's verbs call, by resource; the List* ones take no resource ARN.
SAGEMAKER_ACTIONS = (
    "CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob",
    "CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob", "StopHyperParameterTuningJob",
    "ListTrainingJobsForHyperParameterTuningJob",
    "CreateModel", "DescribeModel", "DeleteModel",
    "CreateEndpointConfig", "DescribeEndpointConfig", "DeleteEndpointConfig",
    "CreateEndpoint", "DescribeEndpoint", "DeleteEndpoint", "InvokeEndpoint", "InvokeEndpointAsync",
    "UpdateEndpointWeightsAndCapacities",  # Application Auto Scaling resizes the variant as the caller
    "CreateTransformJob", "DescribeTransformJob",
    "CreateModelPackageGroup", "DescribeModelPackageGroup", "CreateModelPackage", "DescribeModelPackage",
    "UpdateModelPackage",
    "AddTags", "ListTags",  # every create carries tags: SageMaker asks for AddTags too
)
SAGEMAKER_LISTS = ("ListModels", "ListEndpoints", "ListTrainingJobs", "ListHyperParameterTuningJobs",
                   "ListTransformJobs", "ListModelPackages")
AUTOSCALING_ACTIONS = tuple(f"application-autoscaling:{a}" for a in (
    "RegisterScalableTarget", "DeregisterScalableTarget", "DescribeScalableTargets", "PutScalingPolicy",
    "DeleteScalingPolicy", "DescribeScalingPolicies", "TagResource"))
ALARM_ACTIONS = ("cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms",
                 "cloudwatch:TagResource")  # an asynchronous endpoint's scaling from 0
AUTOSCALING_ROLE = ("aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint")
PUSH_ACTIONS = ("ecr:DescribeRepositories", "ecr:CreateRepository", "ecr:DescribeImages",
                "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage")
INIT_ACTIONS = {  # what `dogctl init` itself calls, on what it creates
    "bucket": ("s3:ListBucket", "s3:CreateBucket", "s3:GetBucketLocation", "s3:GetBucketPublicAccessBlock",
               "s3:PutBucketPublicAccessBlock", "s3:GetEncryptionConfiguration",
               "s3:PutEncryptionConfiguration", "s3:PutBucketTagging"),
    "repository": ("ecr:DescribeRepositories", "ecr:CreateRepository", "ecr:PutImageScanningConfiguration",
                   "ecr:TagResource"),
    "role": ("iam:GetRole", "iam:CreateRole", "iam:TagRole", "iam:GetRolePolicy", "iam:PutRolePolicy"),
}


@dataclass(frozen=True)
class Names:
    """Where one dogctl set-up lives: account, region, bucket and prefix, repository, role."""

    account: str
    region: str
    bucket: str
    prefix: str
    repository: str
    role: str  # the role's name
    partition: str = "aws"
    role_path: str = "/"  # the role's IAM path (console-made roles: /service-role/)

    @property
    def role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role{self.role_path}{self.role}"

    @property
    def policy_name(self) -> str:
        """The role's inline policy for this bucket and prefix (one role may serve several)."""
        name = re.sub(r"[^\w+=,.@-]", "-", f"{EXECUTION_POLICY}-{self.bucket}-{self.prefix.strip('/')}")
        return name[:128]

    @property
    def repository_arn(self) -> str:
        return f"arn:{self.partition}:ecr:{self.region}:{self.account}:repository/{self.repository}"

    @property
    def registry(self) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com"

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.bucket}"

    @property
    def objects_arn(self) -> str:
        return f"{self.bucket_arn}/{self.prefix.strip('/')}/*"


def _statement(sid: str, actions: tuple[str, ...] | list[str], resources: str | list[str],
               condition: dict[str, Any] | None = None) -> dict[str, Any]:
    found = {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resources}
    return {**found, "Condition": condition} if condition else found


def _prefix(names: Names, sid: str, objects: tuple[str, ...]) -> list[dict[str, Any]]:
    """List the bucket under the prefix only, and ``objects`` on the keys under it."""
    prefix = names.prefix.strip("/")
    return [_statement(f"{sid}List", ["s3:ListBucket"], names.bucket_arn,
                       {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}),
            _statement(f"{sid}Objects", objects, names.objects_arn)]


def trust() -> dict[str, Any]:
    """The execution role's trust policy: SageMaker, and nothing else, assumes it."""
    return {"Version": VERSION, "Statement": [
        {"Effect": "Allow", "Principal": {"Service": SAGEMAKER}, "Action": "sts:AssumeRole"}]}


def execution(names: Names) -> dict[str, Any]:
    """What SageMaker does with the role in jobs and endpoints: pull the image, read and write
    under the prefix (channels, checkpoints, outputs, transform and async data, captures), write
    logs and metrics (PutMetricData takes no resource ARN)."""
    logs = f"arn:{names.partition}:logs:{names.region}:{names.account}:log-group:/aws/sagemaker/*"
    return {"Version": VERSION, "Statement": [
        _statement("PullTheImage", ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                    "ecr:BatchCheckLayerAvailability"], names.repository_arn),
        _statement("RegistryToken", ["ecr:GetAuthorizationToken"], "*"),
        *_prefix(names, "ThePrefix", ("s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                      "s3:AbortMultipartUpload")),
        _statement("Logs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                            "logs:DescribeLogStreams"], logs),
        _statement("Metrics", ["cloudwatch:PutMetricData"], "*"),
    ]}


def caller(names: Names) -> dict[str, Any]:
    """What whoever runs dogctl and `make push` needs (`dogctl init` itself: :func:`setup`)."""
    sagemaker = f"arn:{names.partition}:sagemaker:{names.region}:{names.account}:*"
    return {"Version": VERSION, "Statement": [
        *_prefix(names, "Data", ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")),
        _statement("SageMaker", [f"sagemaker:{a}" for a in SAGEMAKER_ACTIONS], sagemaker),
        _statement("SageMakerLists", [f"sagemaker:{a}" for a in SAGEMAKER_LISTS], "*"),
        _statement("PassTheRole", ["iam:PassRole"], names.role_arn,
                   {"StringEquals": {"iam:PassedToService": SAGEMAKER}}),
        _statement("Autoscaling", AUTOSCALING_ACTIONS, "*"),
        _statement("ScaleFromZeroAlarms", ALARM_ACTIONS,
                   f"arn:{names.partition}:cloudwatch:{names.region}:{names.account}:alarm:*"),
        _statement("AutoscalingRole", ["iam:CreateServiceLinkedRole"],
                   f"arn:{names.partition}:iam::{names.account}:role/{AUTOSCALING_ROLE}",
                   {"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}}),
        _statement("PushTheImage", PUSH_ACTIONS, names.repository_arn),
        _statement("WhoAmIAndRegistryToken", ["sts:GetCallerIdentity", "ecr:GetAuthorizationToken"], "*"),
    ]}


def setup(names: Names) -> dict[str, Any]:
    """What `dogctl init` needs, once (an administrator can run it for the team)."""
    return {"Version": VERSION, "Statement": [
        _statement("Bucket", INIT_ACTIONS["bucket"], names.bucket_arn),
        _statement("Repository", INIT_ACTIONS["repository"], names.repository_arn),
        _statement("Role", INIT_ACTIONS["role"], names.role_arn),
        _statement("WhoAmI", ["sts:GetCallerIdentity"], "*"),
    ]}

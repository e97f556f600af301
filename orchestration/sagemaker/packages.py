"""SageMaker's Model Registry: a trained model as a version of a model package group, with the
image, the model data, what it takes and answers, where it may run, and its job's metrics and
rule verdicts (an evaluation document in S3, named by ModelMetrics); registered
PendingManualApproval, then approved or rejected (UpdateModelPackage). ``deploy --package``
serves approved packages only (:func:`approved_arn`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from dogbreed.serve.payloads import CONTENT_TYPES, JSON_TYPE

from ..backend import Package, RegisterRequest, ReviewRequest
from ..packages import APPROVED, PENDING, REJECTED, check_group, must_be_approved, parse_reference
from . import api
from .settings import AwsError, Settings

REALTIME_TYPES = ("ml.g4dn.xlarge", "ml.g5.xlarge", "ml.g6.xlarge", "ml.c5.xlarge", "ml.m5.xlarge")
TRANSFORM_TYPES = ("ml.m5.xlarge", "ml.c5.xlarge", "ml.g4dn.xlarge")


def _absent(exc: Exception) -> bool:
    return "does not exist" in str(exc) or "not found" in str(exc).lower()


def ensure_group(client: Any, group: str, tags: dict[str, str]) -> bool:
    """Create the model package group when missing; whether it was created."""
    from botocore.exceptions import ClientError

    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
        return False
    except ClientError as exc:
        if not _absent(exc):
            raise
    api.create(client, "ModelPackageGroup", {"model_package_group_name": group,
               "model_package_group_description": "dogbreed models (dogctl register)"}, tags=tags)
    return True


def evaluation(job: dict[str, Any] | None, verdicts: tuple[Any, ...]) -> dict[str, Any]:
    """What the registry records of a model: its job's final metrics and every rule's verdict
    (SageMaker's managed rules and the job's own)."""
    if job is None:
        return {"metrics": {}, "rules": {}}
    rules = {r["RuleConfigurationName"]: r.get("RuleEvaluationStatus", "")
             for r in job.get("DebugRuleEvaluationStatuses", [])}
    rules.update({v.rule: v.verdict for v in verdicts})
    return {"training_job": job["TrainingJobName"],
            "metrics": {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])},
            "rules": rules}


def package_request(settings: Settings, group: str, data: str, evaluation_uri: str,
                    found: dict[str, Any], description: str | None) -> api.Request:
    """CreateModelPackage. The inference specification is given by the API's own names: sagemaker-core's
    shape lacks SupportedContentTypes and the instance types (:func:`.api.as_api` checks them)."""
    from sagemaker.core import shapes

    realtime = tuple(dict.fromkeys((settings.endpoint_instance_type, *REALTIME_TYPES)))
    properties = {"training_job": found.get("training_job", ""),
                  **{k: f"{v:.6g}" for k, v in found["metrics"].items()},
                  **{f"rule:{k}": v for k, v in found["rules"].items()}}
    return {
        "model_package_group_name": group, "model_approval_status": PENDING,
        "model_package_description": description or f"model of {found.get('training_job') or data}",
        "inference_specification": {
            "containers": [shapes.ModelPackageContainerDefinition(image=settings.need("image"),
                                                                  model_data_url=data)],
            "supported_content_types": list(CONTENT_TYPES), "supported_response_mime_types": [JSON_TYPE],
            "supported_realtime_inference_instance_types": list(realtime),
            "supported_transform_instance_types": list(TRANSFORM_TYPES)},
        "model_metrics": shapes.ModelMetrics(model_quality=shapes.ModelQuality(
            statistics=shapes.MetricsSource(content_type=JSON_TYPE, s3_uri=evaluation_uri))),
        "customer_metadata_properties": {k: v for k, v in properties.items() if v},
    }


def register(settings: Settings, session: Any, client: Any, request: RegisterRequest, data: str,
             job: dict[str, Any] | None, verdicts: tuple[Any, ...]) -> Package:
    """Register ``data`` (the model.tar.gz of ``job``, when known) in ``request.group``."""
    from .s3 import s3_parts

    group = check_group(request.group)
    tags = settings.resource_tags()
    ensure_group(client, group, tags)
    found = evaluation(job, verdicts)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    uri = settings.s3_uri("registry", group, f"{found.get('training_job') or 'model'}-{stamp}.json")
    bucket, key = s3_parts(uri)
    session.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(found, indent=1).encode(),
                                    ContentType=JSON_TYPE)
    # A version takes no tags (SageMaker refuses them with a group name): its group carries them.
    arn = api.create(client, "ModelPackage",
                     package_request(settings, group, data, uri, found, request.description),
                     tags=None)["ModelPackageArn"]
    return described(client, arn)


def described(client: Any, arn: str, previous: str | None = None) -> Package:
    package = client.describe_model_package(ModelPackageName=arn)
    (container,) = package["InferenceSpecification"]["Containers"][:1]
    properties = package.get("CustomerMetadataProperties", {})
    rules = {k.removeprefix("rule:"): v for k, v in properties.items() if k.startswith("rule:")}
    metrics = {k: float(v) for k, v in properties.items()
               if k != "training_job" and not k.startswith("rule:")}
    return Package(arn, package["ModelPackageGroupName"], package["ModelPackageVersion"],
                   package["ModelApprovalStatus"], container.get("ModelDataUrl", ""), metrics, rules,
                   previous)


def find(client: Any, reference: str, group: str) -> str:
    """The ARN of the package ``reference`` names (latest, latest-approved, N, GROUP/N, ARN)."""
    ref = parse_reference(reference, group)
    if ref.arn:
        return ref.arn
    query: dict[str, Any] = {"ModelPackageGroupName": ref.group, "SortBy": "CreationTime",
                             "SortOrder": "Descending"}
    if ref.approved:
        query["ModelApprovalStatus"] = APPROVED
    pages = client.get_paginator("list_model_packages").paginate(**query)
    for page in pages:
        for summary in page["ModelPackageSummaryList"]:
            if ref.version in (None, summary.get("ModelPackageVersion")):
                return summary["ModelPackageArn"]
    what = "approved version" if ref.approved else f"version {ref.version or ''}".rstrip()
    raise AwsError(f"model package group {ref.group!r} has no {what} (`dogctl register --sagemaker` "
                   "adds one)")


def review(client: Any, request: ReviewRequest) -> Package:
    arn = find(client, request.package, request.group)
    before = client.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]
    status = APPROVED if request.approve else REJECTED
    client.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status,
                                **({"ApprovalDescription": request.note} if request.note else {}))
    return described(client, arn, previous=before)


def approved_arn(client: Any, reference: str, group: str) -> str:
    """The ARN of an approved package, or one line saying why not."""
    arn = find(client, reference, group)
    must_be_approved(arn, client.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"])
    return arn

"""The model registry: `dogctl register`, `approve`, `reject` and `deploy --package`, on
SageMaker's Model Registry (moto, through the proxy of tests/e2e/conftest.py) and in the local
registry file; a package is deployed only once approved."""

from __future__ import annotations

import json
import subprocess

import boto3
import pytest

from tests.helpers import BIN, BUCKET, IMAGE, free_port, recorded

pytestmark = pytest.mark.e2e
OWN = [{"Key": "managed-by", "Value": "dogctl"}, {"Key": "dogctl:prefix", "Value": "dogbreed"}]


def test_register_approve_and_deploy_a_package_on_sagemaker(sagemaker, recording):
    dogctl, _ = sagemaker
    assert dogctl("train", "--sagemaker", "--no-wait", "--name", "job-1").returncode == 0
    dogctl.server.finished["job-1"] = {
        "FinalMetricDataList": [{"MetricName": "valid_acc", "Value": 0.875, "Timestamp": 1700000000},
                                {"MetricName": "valid_loss", "Value": 0.41, "Timestamp": 1700000000}],
        "DebugRuleEvaluationStatuses": [{"RuleConfigurationName": "Overfit",
                                         "RuleEvaluationStatus": "NoIssuesFound"}]}
    out = dogctl("register", "--sagemaker", "--job", "job-1", "--group", "dogs")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "(version 1 of dogs): PendingManualApproval" in out.stdout
    assert "register: metrics: valid_acc 0.875, valid_loss 0.41" in out.stdout
    assert "register: rules: Overfit NoIssuesFound" in out.stdout
    (group,) = recorded(recording, "CreateModelPackageGroup")
    assert group["ModelPackageGroupName"] == "dogs" and group["Tags"] == OWN
    (package,) = recorded(recording, "CreateModelPackage")
    spec = package["InferenceSpecification"]
    model_data = boto3.client("sagemaker").describe_training_job(
        TrainingJobName="job-1")["ModelArtifacts"]["S3ModelArtifacts"]
    assert spec["Containers"] == [{"Image": IMAGE, "ModelDataUrl": model_data}]
    assert spec["SupportedContentTypes"] == ["image/jpeg", "image/png", "application/x-image",
                                             "application/octet-stream", "application/json",
                                             "application/jsonlines"]
    assert spec["SupportedResponseMIMETypes"] == ["application/json"]
    assert "ml.g4dn.xlarge" in spec["SupportedRealtimeInferenceInstanceTypes"]
    # SageMaker refuses tags on a version of a group ("add them to the Model Package Group").
    assert package["ModelApprovalStatus"] == "PendingManualApproval" and "Tags" not in package
    assert package["CustomerMetadataProperties"] == {"training_job": "job-1", "valid_acc": "0.875",
                                                     "valid_loss": "0.41", "rule:Overfit": "NoIssuesFound"}
    uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert uri.startswith(f"s3://{BUCKET}/dogbreed/registry/dogs/job-1-")
    key = uri.removeprefix(f"s3://{BUCKET}/")
    assert json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()) == {
        "training_job": "job-1", "metrics": {"valid_acc": 0.875, "valid_loss": 0.41},
        "rules": {"Overfit": "NoIssuesFound"}}

    refused = dogctl("deploy", "--sagemaker", "--package", "latest-approved", "--group", "dogs")
    assert refused.returncode == 2 and "model package group 'dogs' has no approved version" in refused.stderr
    pending = dogctl("deploy", "--sagemaker", "--package", "dogs/1")
    assert pending.returncode == 2 and "is PendingManualApproval, not Approved" in pending.stderr
    both = dogctl("deploy", "--sagemaker", "--package", "dogs/1", "--model-data", model_data)
    assert both.returncode == 2 and "(--package) or a model (--job, --model-data), not both" in both.stderr
    assert recorded(recording, "CreateModel") == []

    approved = dogctl("approve", "--sagemaker", "1", "--group", "dogs", "--note", "beats v0")
    assert approved.returncode == 0, approved.stderr
    assert "PendingManualApproval -> Approved" in approved.stdout
    arn = approved.stdout.split()[1]
    assert recorded(recording, "UpdateModelPackage") == [
        {"ModelPackageArn": arn, "ModelApprovalStatus": "Approved", "ApprovalDescription": "beats v0"}]
    up = dogctl("deploy", "--sagemaker", "--package", "latest-approved", "--group", "dogs",
                "--instance-type", "ml.c5.xlarge")
    assert up.returncode == 0, up.stdout + up.stderr
    (model,) = recorded(recording, "CreateModel")
    assert model["PrimaryContainer"] == {"ModelPackageName": arn}
    assert dogctl("teardown", "--sagemaker").returncode == 0
    rejected = dogctl("reject", "--sagemaker", "latest", "--group", "dogs")
    assert "Approved -> Rejected" in rejected.stdout, rejected.stdout + rejected.stderr
    again = dogctl("deploy", "--sagemaker", "--package", arn)
    assert again.returncode == 2 and "is Rejected, not Approved" in again.stderr
    # What AWS refuses and no verb words itself is one line, not a traceback.
    missing = dogctl("approve", "--sagemaker", arn.rsplit("/", 2)[0] + "/nothing/7")
    assert missing.returncode == 2 and missing.stderr.startswith("dogctl approve: error: AWS refused: ")
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_the_local_registry_keeps_versions_and_deploys_only_approved_ones(tmp_path, trained_model, train_env):
    work = str(tmp_path / "work")

    def dogctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "dogctl"), "--workdir", work, *args], capture_output=True, text=True,
                              timeout=120, env=train_env)

    first = dogctl("register", "--model", str(trained_model), "--description", "first")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == ("register: dogbreed/1 (version 1 of dogbreed): "
                                            "PendingManualApproval")
    assert "register: metrics: " in first.stdout and "valid_acc 1" in first.stdout
    assert dogctl("register", "--model", str(trained_model)).stdout.startswith("register: dogbreed/2 ")
    port = str(free_port())
    refused = dogctl("deploy", "--package", "latest-approved", "--port", port)
    assert refused.returncode == 2 and "has no approved version" in refused.stderr
    assert "Approved" in dogctl("approve", "1").stdout
    assert "PendingManualApproval -> Rejected" in dogctl("reject", "latest").stdout
    pending = dogctl("deploy", "--package", "2", "--port", port)
    assert pending.returncode == 2 and "dogbreed/2 is Rejected, not Approved" in pending.stderr
    registry = json.loads((tmp_path / "work/registry/dogbreed.json").read_text())
    assert [(v["version"], v["status"]) for v in registry["versions"]] == [(1, "Approved"), (2, "Rejected")]
    assert registry["versions"][0]["model"] == str(trained_model.resolve())
    up = dogctl("deploy", "--package", "latest-approved", "--port", port)
    assert up.returncode == 0, up.stderr
    try:
        assert f"deploy: starting serve on {trained_model.resolve()}" in up.stdout
    finally:
        assert dogctl("teardown").returncode == 0
    bad = dogctl("approve", "1", "--group", "../etc")
    assert bad.returncode == 2 and "letters, digits and dashes" in bad.stderr

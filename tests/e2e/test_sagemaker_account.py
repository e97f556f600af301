"""Operating dogctl on an account, against moto (behind the proxy of tests/e2e/conftest.py where
moto lacks something): `dogctl init` sets up bucket, repository, role and settings once; every
resource dogctl creates is tagged; `dogctl resources` lists what still runs or bills."""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest

from orchestration.sagemaker import account, policies
from orchestration.sagemaker.settings import Settings
from tests.helpers import BIN, BUCKET, ROLE, recorded, use_credentials

pytestmark = pytest.mark.e2e
MODEL_DATA = f"s3://{BUCKET}/dogbreed/jobs/x/output/model.tar.gz"
OWN = [{"Key": "managed-by", "Value": "dogctl"}, {"Key": "dogctl:prefix", "Value": "dogbreed"}]
POLICY = "dogctl-execution-dogbreed-123456789012-eu-west-1-dogbreed"  # the role's, for this bucket and prefix


def test_everything_dogctl_creates_is_tagged_and_resources_lists_what_bills(sagemaker, recording):
    dogctl, _ = sagemaker
    team = [*OWN, {"Key": "team", "Value": "vision"}]
    assert dogctl("train", "--sagemaker", "--no-wait", "--name", "warm-1", "--keep-alive", "900",
                  "--tag", "team=vision").returncode == 0
    assert dogctl("train", "--sagemaker", "--no-wait", "--name", "run-2").returncode == 0
    assert [r["Tags"] for r in recorded(recording, "CreateTrainingJob")] == [team, OWN]
    out = dogctl("deploy", "--sagemaker", "--model-data", MODEL_DATA, "--instance-type", "ml.c5.xlarge",
                 "--tag", "team=vision", "--tag", "cost-centre=42")
    assert out.returncode == 0, out.stdout + out.stderr
    tags = [*team, {"Key": "cost-centre", "Value": "42"}]
    for action in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint"):
        assert recorded(recording, action)[-1]["Tags"] == tags, action
    other = dogctl("deploy", "--sagemaker", "--name", "elsewhere", "--prefix", "other", "--model-data",
                   MODEL_DATA, "--instance-type", "ml.c5.xlarge")
    assert other.returncode == 0, other.stdout + other.stderr
    # Someone else's endpoint in the same account: not dogctl's, never listed.
    sm = boto3.client("sagemaker")
    sm.create_model(ModelName="theirs", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "x"})
    sm.create_endpoint_config(EndpointConfigName="theirs", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "theirs", "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="theirs", EndpointConfigName="theirs")
    dogctl.server.running.add("run-2")
    dogctl.server.warm.add("warm-1")

    listed = dogctl("resources", "--sagemaker")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "resources: 3 running or billing (SageMaker in eu-west-1, prefix 'dogbreed'):"
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == ["endpoint", "training", "warm"]
    assert rows[0][1:3] == ["dogbreed", "InService"] and lines[1].endswith("1 x ml.c5.xlarge")
    assert rows[1][2:4] == ["run-2", "InProgress"] and lines[2].endswith("1 x ml.g4dn.xlarge")
    assert rows[2][2:4] == ["warm-1", "Available"]
    assert lines[3].endswith("1 x ml.g4dn.xlarge, kept 900 s after the job")
    everywhere = dogctl("resources", "--sagemaker", "--all")
    assert "resources: 4 running or billing" in everywhere.stdout and "elsewhere" in everywhere.stdout
    assert "theirs" not in everywhere.stdout

    for name in ("dogbreed", "elsewhere"):
        assert dogctl("teardown", "--sagemaker", "--name", name).returncode == 0
    dogctl.server.running.clear()
    dogctl.server.warm.clear()
    after = dogctl("resources", "--sagemaker", "--all")
    assert after.stdout.strip() == "resources: nothing of dogctl's runs or bills (SageMaker in eu-west-1, " \
                                   "any prefix)"


def test_tags_are_checked_before_anything_is_created(sagemaker, recording):
    dogctl, _ = sagemaker
    for tag, says in (("aws:owner=me", "keys starting aws: are AWS's"),
                      ("managed-by=me", "dogctl's own"),
                      ("team=a;b", "letters, digits, spaces and _.:/=+-@ only"),
                      ("novalue", "expected KEY=VALUE")):
        out = dogctl("deploy", "--sagemaker", "--model-data", MODEL_DATA, "--tag", tag)
        assert out.returncode == 2 and says in out.stderr, (tag, out.stderr)
    assert recorded(recording, "CreateModel") == []


def _init(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dogctl"), "--workdir", str(cwd / "work"), "init", "--sagemaker", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=dict(os.environ))


def test_init_creates_what_is_missing_once_and_writes_the_settings(aws, tmp_path):
    use_credentials(aws)
    s3, ecr, iam = boto3.client("s3"), boto3.client("ecr"), boto3.client("iam")
    bucket, role = "dogbreed-123456789012-eu-west-1", "dogbreed-sagemaker-execution"

    dry = _init(tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"init: bucket     {bucket}: would create (public access blocked, encrypted)" in dry.stdout
    assert '"iam:PassedToService": "sagemaker.amazonaws.com"' in dry.stdout  # the caller's policy
    assert s3.list_buckets()["Buckets"] == [] and ecr.describe_repositories()["repositories"] == []
    assert not (tmp_path / "dogctl.toml").exists()

    first = _init(tmp_path, "--tag", "team=vision")
    assert first.returncode == 0, first.stderr
    assert [line.split(": ", 2)[-1] for line in first.stdout.splitlines()[1:5]] == [
        "created (public access blocked, encrypted)", "created (scan on push)",
        "created (trusted by SageMaker, least privilege)", "created"]
    tags = {"managed-by": "dogctl", "dogctl:prefix": "dogbreed", "team": "vision"}
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == account.BLOCK_ALL
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]} == tags
    (repo,) = ecr.describe_repositories(repositoryNames=["dogbreed"])["repositories"]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    repo_tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert {t["Key"]: t["Value"] for t in repo_tags} == tags
    made = iam.get_role(RoleName=role)["Role"]
    assert made["AssumeRolePolicyDocument"] == policies.trust()
    assert {t["Key"]: t["Value"] for t in made["Tags"]} == tags
    names = policies.Names("123456789012", "eu-west-1", bucket, "dogbreed", "dogbreed", role)
    inline = iam.get_role_policy(RoleName=role, PolicyName=POLICY)["PolicyDocument"]
    assert inline == policies.execution(names)
    settings = Settings.load({}, tmp_path / "dogctl.toml")  # what every --sagemaker verb reads
    assert (settings.region, settings.role, settings.bucket, settings.image, dict(settings.tags)) == (
        "eu-west-1", made["Arn"], bucket, f"{repo['repositoryUri']}:latest", {"team": "vision"})
    caller = json.loads((tmp_path / "work/sagemaker/policies/caller.json").read_text())
    assert caller == policies.caller(names)

    written = (tmp_path / "dogctl.toml").read_text()
    again = _init(tmp_path)  # reads the file it wrote: the same names, nothing to do
    assert again.returncode == 0, again.stderr
    assert [line.split(": ", 2)[-1] for line in again.stdout.splitlines()[1:5]] == [
        "exists (public access blocked, encrypted)", "exists (scan on push)",
        "exists (trusted by SageMaker, least privilege)", "unchanged"]
    assert (tmp_path / "dogctl.toml").read_text() == written

    # What someone loosened since is put back.
    s3.delete_public_access_block(Bucket=bucket)
    ecr.put_image_scanning_configuration(repositoryName="dogbreed",
                                         imageScanningConfiguration={"scanOnPush": False})
    iam.delete_role_policy(RoleName=role, PolicyName=POLICY)
    healed = _init(tmp_path)
    assert [line.split(": ", 2)[-1] for line in healed.stdout.splitlines()[1:4]] == [
        "updated: public access blocked", "updated: scan on push", f"updated: its {POLICY} policy"]
    assert iam.get_role_policy(RoleName=role, PolicyName=POLICY)["PolicyDocument"] == inline

    # A second prefix on the same role and bucket gets a policy of its own; the first one's stays.
    team2 = _init(tmp_path, "--config", "team2.toml", "--prefix", "team2")
    assert team2.returncode == 0, team2.stderr
    assert set(iam.list_role_policies(RoleName=role)["PolicyNames"]) == {
        POLICY, "dogctl-execution-dogbreed-123456789012-eu-west-1-team2"}
    assert iam.get_role_policy(RoleName=role, PolicyName=POLICY)["PolicyDocument"] == inline


def test_init_refuses_what_it_must_not_change(aws, tmp_path):
    use_credentials(aws)
    assert _init(tmp_path).returncode == 0
    other = _init(tmp_path, "--bucket", "another-bucket")
    assert other.returncode == 2
    assert "dogctl.toml exists with other settings (bucket): --force replaces it" in other.stderr
    assert "another-bucket" not in {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
    ec2 = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    boto3.client("iam").create_role(RoleName="ec2-only", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [ec2]}))
    untrusted = _init(tmp_path, "--config", "b.toml", "--role-name", "ec2-only")
    assert untrusted.returncode == 2
    assert "role 'ec2-only' exists but SageMaker may not assume it" in untrusted.stderr
    boto3.client("s3", region_name="us-west-2").create_bucket(
        Bucket="far-away", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    far = _init(tmp_path, "--config", "c.toml", "--bucket", "far-away")
    assert far.returncode == 2 and "bucket 'far-away' is in us-west-2, not eu-west-1" in far.stderr
    assert not (tmp_path / "b.toml").exists() and not (tmp_path / "c.toml").exists()
    (tmp_path / "e.toml").write_text('image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/dogbreed:v1"\n')
    moved = _init(tmp_path, "--config", "e.toml", "--repository", "other")
    assert moved.returncode == 2
    assert "--repository other but the settings' image is in dogbreed" in moved.stderr
    # A console-made role lives under a path: its ARN is kept whole.
    trust = json.dumps(policies.trust())
    made = boto3.client("iam").create_role(RoleName="Console", Path="/service-role/",
                                           AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    (tmp_path / "d.toml").write_text(f'role = "{made}"\n')
    pathed = _init(tmp_path, "--config", "d.toml", "--force")
    assert pathed.returncode == 0, pathed.stderr
    assert f"init: role       {made}: updated" in pathed.stdout
    assert Settings.load({}, tmp_path / "d.toml").role == made
    local = subprocess.run([str(BIN / "dogctl"), "init"], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path)
    assert local.returncode == 2 and "the local backend needs nothing set up" in local.stderr


def _scaling(name: str) -> tuple[list, list, list]:
    """(scalable targets, scaling policies, alarms) of endpoint ``name`` as AWS holds them."""
    autoscaling = boto3.client("application-autoscaling")
    resource = f"endpoint/{name}/variant/AllTraffic"
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker",
                                                    ResourceIds=[resource])["ScalableTargets"]
    policies_ = [p for p in autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource)["ScalingPolicies"] if p["ResourceId"] == resource]
    alarms = boto3.client("cloudwatch").describe_alarms(AlarmNamePrefix=name)["MetricAlarms"]
    return targets, policies_, alarms


def test_deploy_with_autoscale_registers_a_target_and_teardown_removes_it_first(sagemaker, recording):
    dogctl, _ = sagemaker
    out = dogctl("deploy", "--sagemaker", "--model-data", MODEL_DATA, "--instance-type", "ml.c5.xlarge",
                 "--autoscale", "1:4", "--target-invocations", "250")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "deploy: autoscaling: scalable target endpoint/dogbreed/variant/AllTraffic (1-4 instances)" \
        in out.stdout
    (registered,) = recorded(recording, "RegisterScalableTarget")
    assert registered == {
        "ServiceNamespace": "sagemaker", "ResourceId": "endpoint/dogbreed/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": 1, "MaxCapacity": 4,
        "Tags": {"managed-by": "dogctl", "dogctl:prefix": "dogbreed"}}
    targets, (policy,), alarms = _scaling("dogbreed")
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(1, 4)] and alarms == []
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 250.0, "ScaleInCooldown": 300, "ScaleOutCooldown": 60,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}
    listed = dogctl("resources", "--sagemaker")
    assert "1 x ml.c5.xlarge, scales 1-4 instances" in listed.stdout, listed.stdout

    gone = dogctl("teardown", "--sagemaker")
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith("teardown: deleted scaling policy dogbreed-target-tracking, scalable "
                                  "target endpoint/dogbreed/variant/AllTraffic, endpoint dogbreed")
    assert _scaling("dogbreed") == ([], [], [])


def test_an_asynchronous_endpoint_scales_to_zero_on_its_backlog(sagemaker, recording):
    dogctl, _ = sagemaker
    out = dogctl("deploy", "--sagemaker", "--name", "queue", "--async", "--model-data", MODEL_DATA,
                 "--instance-type", "ml.c5.xlarge", "--autoscale", "0:3")
    assert out.returncode == 0, out.stdout + out.stderr
    targets, policies_, (alarm,) = _scaling("queue")
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(0, 3)]
    by_type = {p["PolicyType"]: p for p in policies_}
    tracking = by_type["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 5.0
    assert tracking["CustomizedMetricSpecification"] == {
        "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "EndpointName", "Value": "queue"}], "Statistic": "Average"}
    assert by_type["StepScaling"]["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["AlarmActions"] == [by_type["StepScaling"]["PolicyARN"]]
    assert dogctl("teardown", "--sagemaker", "--name", "queue").returncode == 0
    assert _scaling("queue") == ([], [], [])


def test_autoscale_is_refused_where_it_cannot_work_before_anything_is_created(sagemaker, recording):
    dogctl, _ = sagemaker
    for args, says in ((["--autoscale", "0:2"], "only asynchronous endpoints scale to 0"),
                       (["--autoscale", "3:2"], "expected MIN:MAX instances"),
                       (["--autoscale", "1:2", "--instance-count", "3"], "--instance-count 3 is outside"),
                       (["--autoscale", "1:2", "--serverless-memory", "2048"], "scale by themselves"),
                       (["--autoscale", "1:2", "--target-backlog", "3"], "for asynchronous endpoints"),
                       (["--target-invocations", "30"], "go with --autoscale")):
        out = dogctl("deploy", "--sagemaker", "--model-data", MODEL_DATA, *args)
        assert out.returncode == 2 and says in out.stderr, (args, out.stderr)
    assert recorded(recording, "CreateModel") == []

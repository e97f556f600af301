"""Operating dogctl on an account, against moto behind the proxy of tests/e2e/conftest.py: every
resource dogctl creates is tagged, and `dogctl resources` lists what still runs or bills."""

from __future__ import annotations

import boto3
import pytest

from tests.helpers import BUCKET, ROLE, recorded

pytestmark = pytest.mark.e2e
MODEL_DATA = f"s3://{BUCKET}/dogbreed/jobs/x/output/model.tar.gz"
OWN = [{"Key": "managed-by", "Value": "dogctl"}, {"Key": "dogctl:prefix", "Value": "dogbreed"}]


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

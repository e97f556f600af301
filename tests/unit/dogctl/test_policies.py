"""The caller's policy names every SageMaker action dogctl calls: each boto3 method of the
SageMaker and SageMaker Runtime APIs named anywhere in orchestration/, and each resource
``api.create`` is given, must be in :mod:`orchestration.sagemaker.policies`."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
from botocore import xform_name

from orchestration.sagemaker import policies

ROOT = Path(__file__).resolve().parents[3] / "orchestration"
NAMES = policies.Names("123456789012", "eu-west-1", "b", "dogbreed", "dogbreed", "r")


def called() -> set[str]:
    """The SageMaker operations orchestration/ names: method names, paginator and list names
    in strings, and ``api.create(client, "Resource", ...)`` as CreateResource."""
    session = botocore.session.get_session()
    operations = {xform_name(op): op for service in ("sagemaker", "sagemaker-runtime")
                  for op in session.get_service_model(service).operation_names
                  if "_" in xform_name(op)}  # not Search: the word is in ordinary code
    source = "\n".join(path.read_text() for path in ROOT.rglob("*.py"))
    found = {operations[word] for word in re.findall(r"\b[a-z][a-z_]+\b", source) if word in operations}
    found |= {f"Create{name}" for name in re.findall(r"api\.create\(\w+, \"(\w+)\"", source)}
    return found


def granted(document: dict) -> set[str]:
    return {action.removeprefix("sagemaker:") for statement in document["Statement"]
            for action in statement["Action"] if action.startswith("sagemaker:")}


def test_the_scan_finds_what_dogctl_calls():
    found = called()
    assert {"CreateTrainingJob", "DescribeEndpoint", "ListTags", "InvokeEndpointAsync",
            "ListTrainingJobsForHyperParameterTuningJob"} <= found  # the scan works


def test_the_callers_policy_grants_every_sagemaker_action_dogctl_calls():
    missing = called() - granted(policies.caller(NAMES))
    assert not missing, f"add to policies.SAGEMAKER_ACTIONS or SAGEMAKER_LISTS: {sorted(missing)}"
    assert "AddTags" in granted(policies.caller(NAMES))  # every create carries tags


def test_the_execution_role_reaches_only_its_prefix_repository_and_logs():
    statements = policies.execution(NAMES)["Statement"]
    resources = {s["Sid"]: s["Resource"] for s in statements}
    assert resources["ThePrefixObjects"] == "arn:aws:s3:::b/dogbreed/*"
    assert resources["PullTheImage"] == "arn:aws:ecr:eu-west-1:123456789012:repository/dogbreed"
    assert resources["Logs"] == "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/*"
    wildcard = {s["Sid"] for s in statements if s["Resource"] == "*"}
    assert wildcard == {"RegistryToken", "Metrics"}  # actions that take no resource ARN
    assert not any(a.endswith(":*") for s in statements for a in s["Action"])


def test_init_may_check_an_existing_bucket():
    """HeadBucket needs s3:ListBucket: without it an existing bucket reads as someone else's."""
    (bucket,) = [s for s in policies.setup(NAMES)["Statement"] if s["Sid"] == "Bucket"]
    assert "s3:ListBucket" in bucket["Action"] and bucket["Resource"] == "arn:aws:s3:::b"


def test_a_trust_policy_with_a_principal_of_star_is_read_not_a_crash():
    from orchestration.sagemaker.account import _trusts_sagemaker

    anyone = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]}
    assert _trusts_sagemaker(anyone) is False
    assert _trusts_sagemaker(policies.trust()) is True

"""`make push`'s ECR side against a moto server on loopback (real HTTP, real boto3)."""

from __future__ import annotations

import json

import boto3
import pytest

from orchestration.registry import DOCKER_V2, RegistryError, Target, check_manifest, ecr_target
from tests.helpers import use_credentials

pytestmark = pytest.mark.e2e


def test_ecr_repository_is_created_once_and_the_registry_named(aws):
    use_credentials(aws)
    target = ecr_target("dogbreed-push-test")
    assert target.registry == "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert target.uri("v1") == f"{target.registry}/dogbreed-push-test:v1"
    assert target.username == "AWS" and target.password
    again = ecr_target("dogbreed-push-test")  # exists now: found, not created twice
    assert again.registry == target.registry
    repos = boto3.client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repos].count("dogbreed-push-test") == 1


def test_region_from_the_aws_config_file(aws, tmp_path):
    use_credentials(aws)
    aws.delenv("AWS_DEFAULT_REGION")
    (tmp_path / "aws-config").write_text("[default]\nregion = ap-south-1\n")
    assert ecr_target("dogbreed").registry.endswith(".dkr.ecr.ap-south-1.amazonaws.com")


def test_missing_region_says_what_to_set(aws):
    aws.setenv("AWS_ACCESS_KEY_ID", "testing")
    aws.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(RegistryError, match="no AWS region: set AWS_REGION"):
        ecr_target("dogbreed")


def test_missing_credentials_say_what_to_do(aws):
    aws.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    aws.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(RegistryError, match="no AWS credentials: run `aws configure`"):
        ecr_target("dogbreed")


def test_registry_target_without_login():
    target = Target("127.0.0.1:5000", "dogbreed")
    assert target.uri("latest") == "127.0.0.1:5000/dogbreed:latest" and target.password is None


def manifest(media_type: str) -> str:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type,
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                  "size": 2, "digest": "sha256:" + "0" * 64}, "layers": []})


def test_an_oci_manifest_in_ecr_is_refused_clearly(aws):
    use_credentials(aws)
    target = ecr_target("dogbreed-manifest-test")
    ecr = boto3.client("ecr")
    for tag, media_type in (("v2", DOCKER_V2), ("oci", "application/vnd.oci.image.manifest.v1+json")):
        ecr.put_image(repositoryName=target.repository, imageTag=tag, imageManifest=manifest(media_type),
                      imageManifestMediaType=media_type)
    check_manifest(target, "v2")
    with pytest.raises(RegistryError, match="stored as application/vnd.oci.image.manifest.v1.json, which "
                                            "SageMaker rejects"):
        check_manifest(target, "oci")

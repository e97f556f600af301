"""`dogctl data --sagemaker`: channels uploaded to S3 (a moto server over real HTTP), unchanged
files skipped, settings from options, environment or dogctl.toml, clear errors otherwise."""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest

from local_test.testdata import make_dataset
from tests.helpers import BIN, use_credentials

pytestmark = pytest.mark.e2e


def dogctl(work, *args, cwd=None):
    return subprocess.run([str(BIN / "dogctl"), "--workdir", str(work), *args], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ), cwd=cwd)


def keys(bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    found = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in found}


def test_upload_then_skip_unchanged_then_upload_the_changed_file(aws, tmp_path):
    use_credentials(aws)
    boto3.client("s3").create_bucket(Bucket="dogs",
                                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    src = make_dataset(tmp_path / "src", classes=2, per_class=3, size=32)
    work = tmp_path / "work"
    out = dogctl(work, "data", "--source", str(src), "--sagemaker", "--bucket", "dogs", "--prefix", "exp1")
    assert out.returncode == 0, out.stderr
    assert "data: train -> s3://dogs/exp1/data/train/ (6 uploaded, 0 unchanged)" in out.stdout
    stored = keys("dogs", "exp1/data/")
    local = {f"exp1/data/{split}/{p.relative_to(src / split).as_posix()}": p.read_bytes()
             for split in ("train", "valid", "test") for p in (src / split).rglob("*.jpg")}
    assert stored == local
    channels = json.loads((work / "data" / "channels.json").read_text())["s3_channels"]
    assert channels == {s: f"s3://dogs/exp1/data/{s}/" for s in ("train", "valid", "test")}

    again = dogctl(work, "data", "--source", str(src), "--sagemaker", "--bucket", "dogs", "--prefix", "exp1")
    assert "(0 uploaded, 6 unchanged)" in again.stdout, again.stdout + again.stderr

    changed = next((src / "train").rglob("*.jpg"))
    changed.write_bytes(changed.read_bytes() + b"\0")
    third = dogctl(work, "data", "--source", str(src), "--sagemaker", "--bucket", "dogs", "--prefix", "exp1")
    assert "data: train -> s3://dogs/exp1/data/train/ (1 uploaded, 5 unchanged)" in third.stdout


def test_settings_file_and_clear_errors(aws, tmp_path):
    src = make_dataset(tmp_path / "src", classes=2, per_class=2, size=32)
    work = tmp_path / "work"
    no_bucket = dogctl(work, "data", "--source", str(src), "--sagemaker", cwd=tmp_path)
    assert no_bucket.returncode == 2
    assert no_bucket.stderr.strip() == ('dogctl data: error: no bucket: pass --bucket, set DOGCTL_BUCKET, '
                                        'or put bucket = "..." in dogctl.toml (see README)')
    (tmp_path / "dogctl.toml").write_text('bucket = "from-file"\nregion = "eu-west-1"\n')
    no_creds = dogctl(work, "data", "--source", str(src), "--sagemaker", cwd=tmp_path)
    assert no_creds.returncode == 2 and "no AWS credentials: `aws configure`" in no_creds.stderr
    use_credentials(aws, region=None)
    missing = dogctl(work, "data", "--source", str(src), "--sagemaker", cwd=tmp_path)
    assert missing.returncode == 2 and "bucket 'from-file' does not exist" in missing.stderr
    (tmp_path / "dogctl.toml").write_text('bucket = "x"\ncolour = "blue"\n')
    unknown = dogctl(work, "data", "--source", str(src), "--sagemaker", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown setting(s) colour" in unknown.stderr
    for result in (no_bucket, no_creds, missing, unknown):
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["dogbreed-reset-a", "dogbreed-reset-b"])
def test_every_test_starts_from_an_empty_account(aws, name):
    """moto's state is reset before each test: what another test created on this worker is gone
    (both cases create a bucket; neither sees the other's, nor the jobs bucket of other tests)."""
    use_credentials(aws)
    s3 = boto3.client("s3")
    assert s3.list_buckets()["Buckets"] == []
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [name]

"""The SageMaker backend's configuration, and the S3 side of `dogctl data`.

Settings come from, in order: command-line options, environment variables (``DOGCTL_<NAME>``,
and the AWS ones boto3 reads: AWS_PROFILE, AWS_REGION, ...), then one TOML file (``--config``,
``$DOGCTL_CONFIG`` or ``./dogctl.toml``), e.g.::

    region = "eu-west-1"
    role = "arn:aws:iam::123456789012:role/SageMakerExecution"
    bucket = "my-bucket"
    prefix = "dogbreed"
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/dogbreed:latest"

Each missing setting is reported with where it can be given, never as a traceback.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

CONFIG_ENV = "DOGCTL_CONFIG"
DEFAULT_CONFIG = Path("dogctl.toml")


class AwsError(Exception):
    """A setting, a credential or an AWS call is missing or refused; the message says what to do."""


@dataclass(frozen=True)
class Settings:
    region: str | None = None
    role: str | None = None
    bucket: str | None = None
    prefix: str = "dogbreed"
    image: str | None = None
    train_instance_type: str = "ml.g4dn.xlarge"
    endpoint_instance_type: str = "ml.g4dn.xlarge"

    @classmethod
    def load(cls, options: dict[str, Any] | None = None, config: Path | None = None) -> Settings:
        path = config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
        if path is None and DEFAULT_CONFIG.is_file():
            path = DEFAULT_CONFIG
        values: dict[str, Any] = {}
        if path is not None:
            try:
                values = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise AwsError(f"cannot read the configuration {path}: {exc}") from exc
            unknown = set(values) - {f.name for f in fields(cls)}
            if unknown:
                raise AwsError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(f.name for f in fields(cls))}")
        for f in fields(cls):
            env = os.environ.get(f"DOGCTL_{f.name.upper()}")
            if env:
                values[f.name] = env
        values.update({k: v for k, v in (options or {}).items() if v is not None})
        return cls(**values)

    def need(self, name: str) -> str:
        value = getattr(self, name)
        if not value:
            raise AwsError(f"no {name}: pass --{name.replace('_', '-')}, set DOGCTL_{name.upper()}, "
                           f"or put {name} = \"...\" in {DEFAULT_CONFIG} (see README)")
        return value

    def session(self) -> Any:
        """A boto3 session with a region and credentials, or a clear error."""
        import boto3

        session = boto3.Session(region_name=self.region)
        if not session.region_name:
            raise AwsError("no AWS region: pass --region, set AWS_REGION, or `aws configure`")
        if session.get_credentials() is None:
            raise AwsError("no AWS credentials: `aws configure` (or set AWS_PROFILE); without AWS, "
                           "use the local backend (--local)")
        return session

    def s3_uri(self, *parts: str) -> str:
        return "s3://" + "/".join([self.need("bucket"), self.prefix.strip("/"), *parts])


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class UploadResult:
    uri: str
    uploaded: int
    unchanged: int


def upload_channel(session: Any, folder: Path, uri: str,
                   progress: Callable[[int, int], None] | None = None) -> UploadResult:
    """Mirror ``folder`` under ``uri`` (s3://bucket/key-prefix), skipping files already there with
    the same size and MD5 (the ETag of a single-part upload). Links are followed (carved splits)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/")
    s3 = session.client("s3")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    try:
        existing: dict[str, tuple[int, str]] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for obj in page.get("Contents", []):
                existing[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
        uploaded = unchanged = 0
        for i, path in enumerate(files, 1):
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            size = path.stat().st_size
            if key in existing and existing[key] == (size, _md5(path)):
                unchanged += 1
            else:
                s3.upload_file(str(path), bucket, key)
                uploaded += 1
            if progress:
                progress(i, len(files))
    except s3.exceptions.NoSuchBucket as exc:
        raise AwsError(f"bucket {bucket!r} does not exist (or is not yours): create it, "
                       "or set another") from exc
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(f"S3 refused the upload to {uri}: {exc}") from exc
    return UploadResult(f"s3://{bucket}/{prefix}/", uploaded, unchanged)

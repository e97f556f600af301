"""The SageMaker backend's configuration: settings, AWS session, and the one error type.

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

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dogbreed.errors import UserError

CONFIG_ENV = "DOGCTL_CONFIG"
DEFAULT_CONFIG = Path("dogctl.toml")


class AwsError(UserError):
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

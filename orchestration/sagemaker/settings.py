"""The SageMaker backend's configuration: settings, AWS session, and the one error type.

Settings come from, in order: command-line options, environment variables (``DOGCTL_<NAME>``,
and the AWS ones boto3 reads: AWS_PROFILE, AWS_REGION, ...), then one TOML file (``--config``,
``$DOGCTL_CONFIG`` or ``./dogctl.toml``), e.g.::

    region = "eu-west-1"
    role = "arn:aws:iam::123456789012:role/SageMakerExecution"
    bucket = "my-bucket"
    prefix = "dogbreed"
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/dogbreed:latest"

    [tags]              # on everything dogctl creates, beside its own (see :data:`OWN_TAGS`)
    team = "vision"

Each missing setting is reported with where it can be given, never as a traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dogbreed.errors import UserError

CONFIG_ENV = "DOGCTL_CONFIG"
DEFAULT_CONFIG = Path("dogctl.toml")


MANAGED_BY = "managed-by"  # dogctl's own tags, on everything it creates: `dogctl resources` finds them
PREFIX_TAG = "dogctl:prefix"
MAX_USER_TAGS = 48  # SageMaker takes 50 tags a resource; dogctl's own are two
TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")  # SageMaker's tag alphabet: letters, digits, spaces, _.:/=+-@


class AwsError(UserError):
    """A setting, a credential or an AWS call is missing or refused; the message says what to do."""


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The user's tags, or one line saying which is refused and why (before anything is sent)."""
    if len(tags) > MAX_USER_TAGS:
        raise AwsError(f"{len(tags)} tags: SageMaker takes {MAX_USER_TAGS} beside dogctl's own")
    for key, value in tags.items():
        key, value = str(key), str(value)
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise AwsError(f"tag {key!r}: keys are 1-128 characters, values at most 256")
        if key.lower().startswith("aws:") or key in (MANAGED_BY, PREFIX_TAG):
            raise AwsError(f"tag {key!r}: keys starting aws: are AWS's, and {MANAGED_BY} and "
                           f"{PREFIX_TAG} are dogctl's own")
        if not TAG_TEXT.fullmatch(key) or not TAG_TEXT.fullmatch(value):
            raise AwsError(f"tag {key}={value}: letters, digits, spaces and _.:/=+-@ only")
    return {str(k): str(v) for k, v in tags.items()}


def parse_tags(text: str) -> dict[str, str]:
    """``K=V,K=V`` (DOGCTL_TAGS) as a mapping."""
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if any(not sep or not key.strip() for key, sep, _ in pairs):
        raise AwsError(f"DOGCTL_TAGS={text!r}: expected KEY=VALUE[,KEY=VALUE...]")
    return {key.strip(): value.strip() for key, _, value in pairs}


@dataclass(frozen=True)
class Settings:
    region: str | None = None
    role: str | None = None
    bucket: str | None = None
    prefix: str = "dogbreed"
    image: str | None = None
    train_instance_type: str = "ml.g4dn.xlarge"
    endpoint_instance_type: str = "ml.g4dn.xlarge"
    tags: Mapping[str, str] = field(default_factory=dict)  # the user's: file, DOGCTL_TAGS, then --tag

    @classmethod
    def load(cls, options: dict[str, Any] | None = None, config: Path | None = None, *,
             missing_ok: bool = False) -> Settings:
        """The settings; ``missing_ok``: a settings file that is not there yet reads as empty
        (`dogctl init` writes it)."""
        path = config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
        if path is None and DEFAULT_CONFIG.is_file():
            path = DEFAULT_CONFIG
        values: dict[str, Any] = {}
        if path is not None and not (missing_ok and not path.exists()):
            try:
                values = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise AwsError(f"cannot read the configuration {path}: {exc}") from exc
            unknown = set(values) - {f.name for f in fields(cls)}
            if unknown:
                raise AwsError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(f.name for f in fields(cls))}")
        if not isinstance(values.get("tags", {}), dict):
            raise AwsError(f"{path}: tags is a table: [tags] then KEY = \"VALUE\" lines")
        tags = dict(values.get("tags", {}))
        for f in fields(cls):
            env = os.environ.get(f"DOGCTL_{f.name.upper()}")
            if env and f.name == "tags":
                tags.update(parse_tags(env))  # DOGCTL_TAGS=K=V,K=V adds to the file's
            elif env:
                values[f.name] = env
        options = dict(options or {})
        tags.update(options.pop("tags", None) or {})
        values.update({k: v for k, v in options.items() if v is not None})
        values["tags"] = check_tags(tags)
        return cls(**values)

    def resource_tags(self) -> dict[str, str]:
        """The tags of everything dogctl creates: its own (who made it, under which prefix), then
        the user's."""
        return {MANAGED_BY: "dogctl", PREFIX_TAG: self.prefix, **self.tags}

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

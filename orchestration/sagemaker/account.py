"""`dogctl init --sagemaker`: check an account for what dogctl needs, create what is missing,
and write the settings file.

- an S3 bucket in the region, public access blocked, encrypted by default (SSE-S3);
- an ECR repository that scans each pushed image;
- an execution role that SageMaker alone may assume, with the least-privilege policy of
  :func:`.policies.execution` (re-applied on every run, so it follows this version of dogctl);
- ``dogctl.toml`` naming them, never replaced by a different one without ``force``.

Every step is idempotent: a second run finds everything and changes nothing. ``dry_run``
only reads.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import policies
from .policies import Names
from .settings import AwsError, Settings

DEFAULT_ROLE = "dogbreed-sagemaker-execution"
DEFAULT_REPOSITORY = "dogbreed"  # what `make push` pushes to (its REPOSITORY)


@dataclass(frozen=True)
class Step:
    what: str  # bucket, repository, role, settings
    name: str
    state: str  # created, exists, updated: ..., would create, would update: ...


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def names_for(settings: Settings, session: Any, *, bucket: str | None, role: str | None,
              repository: str | None) -> Names:
    """The account's names: options, then the settings (a second run reads the file the first
    wrote), then the defaults (bucket ``dogbreed-ACCOUNT-REGION``, unique to the account)."""
    identity = session.client("sts").get_caller_identity()
    account, region = identity["Account"], session.region_name
    path = "/"
    if not role and settings.role:  # arn:aws:iam::ACCOUNT:role[/PATH/]NAME
        found = settings.role.split(":role", 1)[-1]
        path, role = found.rsplit("/", 1)[0] + "/", found.rsplit("/", 1)[-1]
    pinned = settings.image and settings.image.split("/", 1)[-1].split("@")[0].split(":")[0]
    if pinned and repository and repository != pinned:
        raise AwsError(f"--repository {repository} but the settings' image is in {pinned}: pass the same, "
                       "or change image in the settings file")
    return Names(account, region, bucket or settings.bucket or f"dogbreed-{account}-{region}",
                 settings.prefix, repository or pinned or DEFAULT_REPOSITORY, role or DEFAULT_ROLE,
                 identity["Arn"].split(":")[1], path)


def settings_document(names: Names, settings: Settings) -> dict[str, Any]:
    """What ``dogctl.toml`` holds after init: the names, the image the settings had (a pinned
    tag stays) or the repository's ``latest``, and the settings' tags."""
    found: dict[str, Any] = {"region": names.region, "role": names.role_arn, "bucket": names.bucket,
                             "prefix": names.prefix,
                             "image": settings.image or f"{names.registry}/{names.repository}:latest"}
    defaults = Settings()
    for key in ("train_instance_type", "endpoint_instance_type"):  # kept when the settings changed them
        if getattr(settings, key) != getattr(defaults, key):
            found[key] = getattr(settings, key)
    return {**found, "tags": dict(settings.tags)} if settings.tags else found


def toml_text(document: Mapping[str, Any]) -> str:
    """``document`` (strings, and one table of strings) as TOML; JSON's string quoting is TOML's."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in document.items() if not isinstance(value, dict)]
    for table, values in ((k, v) for k, v in document.items() if isinstance(v, dict)):
        lines += ["", f"[{table}]", *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in values.items())]
    return "\n".join(["# written by `dogctl init --sagemaker`", *lines]) + "\n"


def check_settings_file(path: Path, document: Mapping[str, Any], force: bool) -> str:
    """``unchanged``, ``created`` or ``replaced`` for the file at ``path``; refuses a different
    one without ``force`` (before anything is created)."""
    if not path.exists():
        return "created"
    try:
        current = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        current = {"(unreadable)": str(exc)}
    if current == dict(document):
        return "unchanged"
    if not force:
        differ = sorted(k for k in {*current, *document} if current.get(k) != document.get(k))
        raise AwsError(f"{path} exists with other settings ({', '.join(differ)}): --force replaces it, "
                       "or pass --config OTHER.toml")
    return "replaced"


def ensure_bucket(s3: Any, names: Names, tags: Mapping[str, str], dry_run: bool) -> Step:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=names.bucket)
    except ClientError as exc:
        if _code(exc) in ("403", "AccessDenied"):
            raise AwsError(f"bucket {names.bucket!r} exists but is not yours (or you lack s3:ListBucket "
                           "on it): pass another --bucket") from exc
        if _code(exc) in ("301", "PermanentRedirect"):
            raise AwsError(f"bucket {names.bucket!r} exists in another region than {names.region}: "
                           "SageMaker reads channels from its own region; pass another --bucket") from exc
        if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        if dry_run:
            return Step("bucket", names.bucket, "would create (public access blocked, encrypted)")
        where = {} if names.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": names.region}}
        s3.create_bucket(Bucket=names.bucket, **where)
        s3.put_bucket_tagging(Bucket=names.bucket, Tagging={
            "TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        _secure_bucket(s3, names.bucket)
        return Step("bucket", names.bucket, "created (public access blocked, encrypted)")
    region = s3.get_bucket_location(Bucket=names.bucket).get("LocationConstraint") or "us-east-1"
    region = "eu-west-1" if region == "EU" else region  # the old name of eu-west-1
    if region != names.region:
        raise AwsError(f"bucket {names.bucket!r} is in {region}, not {names.region}: SageMaker reads "
                       f"channels from its own region; pass --region {region} or another --bucket")
    missing = _insecure(s3, names.bucket)
    if missing and not dry_run:
        _secure_bucket(s3, names.bucket)
    return Step("bucket", names.bucket, (("would update: " if dry_run else "updated: ") + ", ".join(missing))
                if missing else "exists (public access blocked, encrypted)")


BLOCK_ALL = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
             "RestrictPublicBuckets": True}


def _insecure(s3: Any, bucket: str) -> list[str]:
    """What the bucket lacks: the public access block, default encryption."""
    from botocore.exceptions import ClientError

    missing = []
    try:
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        if any(not block.get(k) for k in BLOCK_ALL):
            missing.append("public access blocked")
    except ClientError:
        missing.append("public access blocked")
    try:
        s3.get_bucket_encryption(Bucket=bucket)
    except ClientError:
        missing.append("encrypted")
    return missing


def _secure_bucket(s3: Any, bucket: str) -> None:
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=BLOCK_ALL)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]})


def ensure_repository(ecr: Any, names: Names, tags: Mapping[str, str], dry_run: bool) -> Step:
    try:
        (repo,) = ecr.describe_repositories(repositoryNames=[names.repository])["repositories"]
    except ecr.exceptions.RepositoryNotFoundException:
        if dry_run:
            return Step("repository", names.repository, "would create (scan on push)")
        ecr.create_repository(repositoryName=names.repository,
                              imageScanningConfiguration={"scanOnPush": True}, imageTagMutability="MUTABLE",
                              encryptionConfiguration={"encryptionType": "AES256"},
                              tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        return Step("repository", names.repository, "created (scan on push)")
    if repo.get("imageScanningConfiguration", {}).get("scanOnPush"):
        return Step("repository", names.repository, "exists (scan on push)")
    if not dry_run:
        ecr.put_image_scanning_configuration(repositoryName=names.repository,
                                             imageScanningConfiguration={"scanOnPush": True})
    return Step("repository", names.repository, ("would update" if dry_run else "updated") + ": scan on push")


def ensure_role(iam: Any, names: Names, tags: Mapping[str, str], dry_run: bool) -> Step:
    """The role, trusted by SageMaker, with :func:`.policies.execution` as its inline policy."""
    wanted = policies.execution(names)
    try:
        role = iam.get_role(RoleName=names.role)["Role"]
    except iam.exceptions.NoSuchEntityException:
        if dry_run:
            return Step("role", names.role_arn, "would create (trusted by SageMaker, least privilege)")
        iam.create_role(RoleName=names.role, Path=names.role_path,
                        AssumeRolePolicyDocument=json.dumps(policies.trust()),
                        Description="SageMaker execution role for dogctl (dogctl init)",
                        Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        iam.put_role_policy(RoleName=names.role, PolicyName=names.policy_name,
                            PolicyDocument=json.dumps(wanted))
        return Step("role", names.role_arn, "created (trusted by SageMaker, least privilege)")
    if not _trusts_sagemaker(role.get("AssumeRolePolicyDocument")):
        raise AwsError(f"role {names.role!r} exists but SageMaker may not assume it: pass another "
                       f"--role-name, or let {policies.SAGEMAKER} assume it")
    try:
        current = iam.get_role_policy(RoleName=names.role, PolicyName=names.policy_name)
        document = current["PolicyDocument"]
        current_policy = json.loads(document) if isinstance(document, str) else document
    except iam.exceptions.NoSuchEntityException:
        current_policy = None
    if current_policy == wanted:
        return Step("role", names.role_arn, "exists (trusted by SageMaker, least privilege)")
    if not dry_run:
        iam.put_role_policy(RoleName=names.role, PolicyName=names.policy_name,
                            PolicyDocument=json.dumps(wanted))
    return Step("role", names.role_arn, ("would update" if dry_run else "updated")
                + f": its {names.policy_name} policy")


def _trusts_sagemaker(document: Any) -> bool:
    if isinstance(document, str):
        import urllib.parse

        document = json.loads(urllib.parse.unquote(document))
    for statement in (document or {}).get("Statement", []):
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        if statement.get("Effect") == "Allow" and policies.SAGEMAKER in services:
            return True
    return False


def init(settings: Settings, session: Any, path: Path, *, bucket: str | None = None, role: str | None = None,
         repository: str | None = None, force: bool = False, dry_run: bool = False,
         emit: Callable[[Step], None] = lambda step: None) -> tuple[Names, list[Step]]:
    """Check and create the bucket, repository and role, then write ``path``; each step as done."""
    names = names_for(settings, session, bucket=bucket, role=role, repository=repository)
    document = settings_document(names, settings)
    written = check_settings_file(path, document, force)  # refused before anything is created
    tags = settings.resource_tags()
    steps = []
    for step in (lambda: ensure_bucket(session.client("s3"), names, tags, dry_run),
                 lambda: ensure_repository(session.client("ecr"), names, tags, dry_run),
                 lambda: ensure_role(session.client("iam"), names, tags, dry_run)):
        steps.append(step())
        emit(steps[-1])
    if written != "unchanged" and not dry_run:
        path.write_text(toml_text(document))
    steps.append(Step("settings", str(path), ("would be " if dry_run and written != "unchanged" else "")
                      + written))
    emit(steps[-1])
    return names, steps

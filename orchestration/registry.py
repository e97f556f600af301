"""Push the image to Amazon ECR, or to any registry: what `make push` runs.

    python -m orchestration.registry IMAGE [--registry HOST[:PORT]] [--repository NAME] [--tag TAG]

Without ``--registry``: Amazon ECR of the configured account and region (the AWS CLI's
configuration: AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION, ~/.aws/config and credentials,
read through boto3); the repository is created when missing, the engine logs in with an ECR
token, then the image is tagged and pushed, as ``--tag`` (default latest) and as an immutable tag
(``<version>-<image id>``). The pushed manifest is Docker v2 schema 2 (podman: ``--format v2s2``),
the only format SageMaker accepts, and is checked (ECR's describe-images, or the registry's own
answer). Prints the image URI with the immutable tag on stdout: deploy that one.
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dogbreed.errors import UserError

ENGINE_SCRIPT = Path(__file__).resolve().parent.parent / "docker" / "engine.sh"
DEFAULT_REPOSITORY = "dogbreed"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"  # the only one SageMaker accepts
MANIFESTS = ", ".join([DOCKER_V2, "application/vnd.oci.image.manifest.v1+json",
                       "application/vnd.oci.image.index.v1+json",
                       "application/vnd.docker.distribution.manifest.list.v2+json"])


class RegistryError(UserError):
    """The push cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class Target:
    registry: str  # host[:port]
    repository: str
    username: str | None = None
    password: str | None = None
    ecr_region: str | None = None  # set: Amazon ECR, asked through its API

    def uri(self, tag: str) -> str:
        return f"{self.registry}/{self.repository}:{tag}"


def engine() -> str:
    result = subprocess.run(["bash", str(ENGINE_SCRIPT)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RegistryError(result.stderr.strip() or "no container engine")
    return result.stdout.strip()


def ecr_target(repository: str, region: str | None = None) -> Target:
    """The ECR registry of the configured account and region, with ``repository`` created if missing."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    session = boto3.Session(region_name=region)
    if not session.region_name:
        raise RegistryError("no AWS region: set AWS_REGION, or a region in ~/.aws/config (aws configure)")
    try:
        account = session.client("sts").get_caller_identity()["Account"]
        ecr = session.client("ecr")
        try:
            ecr.describe_repositories(repositoryNames=[repository])
        except ecr.exceptions.RepositoryNotFoundException:
            print(f"push: creating ECR repository {repository} in {session.region_name}", file=sys.stderr)
            ecr.create_repository(repositoryName=repository,
                                  imageScanningConfiguration={"scanOnPush": True})
        auth = ecr.get_authorization_token()["authorizationData"][0]
    except NoCredentialsError as exc:
        raise RegistryError("no AWS credentials: run `aws configure` (or set AWS_PROFILE), "
                            "or push elsewhere with REGISTRY=host[:port]") from exc
    except (ClientError, BotoCoreError) as exc:
        raise RegistryError(f"AWS refused: {exc}") from exc
    username, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    host = f"{account}.dkr.ecr.{session.region_name}.amazonaws.com"
    return Target(host, repository, username, password, session.region_name)


def _run(cmd: list[str], stdin: str | None = None) -> None:
    print("push: " + " ".join(cmd), file=sys.stderr, flush=True)
    result = subprocess.run(cmd, input=stdin, text=True)
    if result.returncode != 0:
        raise RegistryError(f"`{' '.join(cmd[:2])}` failed (exit {result.returncode})")


def _inspect(engine_name: str, image: str) -> tuple[str, str] | None:
    """(image ID without ``sha256:``, creation time) of a local image, or None when the engine
    does not have it."""
    found = subprocess.run([engine_name, "image", "inspect", "--format", "{{.Id}} {{.Created}}", image],
                           capture_output=True, text=True)
    if found.returncode != 0:
        return None
    image_id, _, created = found.stdout.strip().partition(" ")
    return image_id.removeprefix("sha256:"), created


def local_image(engine_name: str, image: str) -> str | None:
    """``image <id>, built <time>`` for a local image, or None when the engine does not have it."""
    found = _inspect(engine_name, image)
    return None if found is None else f"image {found[0][:12]}, built {found[1][:19]}"


def immutable_tag(image_id: str) -> str:
    """A tag that names one build only: the package version and the image ID."""
    from dogbreed import __version__

    return f"{__version__}-{image_id[:12]}"


def manifest_type(target: Target, tag: str) -> str | None:
    """The media type of ``tag``'s manifest as the registry stores it; None if it would not say."""
    if target.ecr_region:
        import boto3

        ecr = boto3.client("ecr", region_name=target.ecr_region)
        found = ecr.describe_images(repositoryName=target.repository, imageIds=[{"imageTag": tag}])
        return found["imageDetails"][0].get("imageManifestMediaType")
    host = target.registry.split(":")[0]
    scheme = "http" if host in ("localhost", "127.0.0.1") else "https"
    url = f"{scheme}://{target.registry}/v2/{target.repository}/manifests/{tag}"
    request = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFESTS})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.headers.get("Content-Type", "").split(";")[0].strip() or None
    except OSError:  # needs credentials (HTTPError), or unreachable from here
        return None


def check_manifest(target: Target, tag: str) -> None:
    """Fail unless the pushed manifest is Docker v2 schema 2 (SageMaker rejects OCI manifests)."""
    media_type = manifest_type(target, tag)
    uri = target.uri(tag)
    if media_type is None:
        print(f"push: warning: {target.registry} did not say the manifest type of {uri}; SageMaker "
              f"needs {DOCKER_V2}", file=sys.stderr)
    elif media_type != DOCKER_V2:
        raise RegistryError(f"{uri} is stored as {media_type}, which SageMaker rejects ("
                            f"\"Unsupported manifest media type\"): it needs {DOCKER_V2}; build with "
                            "`make build` (podman/buildah --format docker; docker without attestations) "
                            "and push again")


def push(image: str, target: Target, tag: str, engine_name: str) -> str:
    """Push ``image`` as ``tag`` and as its immutable tag, check the manifest type; the URI with
    the immutable tag (what to deploy: ``latest`` moves, this one never does)."""
    found = _inspect(engine_name, image)
    if found is None:
        raise RegistryError(f"no local image {image}: run `make build` first")
    if target.password is not None:
        _run([engine_name, "login", "--username", target.username or "AWS", "--password-stdin",
              target.registry], stdin=target.password)
    fixed = immutable_tag(found[0])
    for name in (tag, fixed):
        uri = target.uri(name)
        _run([engine_name, "tag", image, uri])
        # Docker v2 schema 2: SageMaker rejects OCI manifests. docker pushes that format already.
        _run([engine_name, "push", *(["--format", "v2s2"] if engine_name != "docker" else []), uri])
    check_manifest(target, fixed)
    print(f"push: {target.uri(tag)} and {target.uri(fixed)} pushed, Docker v2 schema 2", file=sys.stderr)
    return target.uri(fixed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="push", description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="local image, e.g. dogbreed:latest")
    parser.add_argument("--registry", help="push to this registry (host[:port]) instead of ECR")
    parser.add_argument("--repository", default=DEFAULT_REPOSITORY,
                        help="repository name (default: %(default)s)")
    parser.add_argument("--tag", default="latest", help="remote tag (default: %(default)s)")
    parser.add_argument("--region", help="AWS region (default: from the AWS configuration)")
    args = parser.parse_args(argv)
    try:
        name = engine()
        target = (Target(args.registry, args.repository) if args.registry
                  else ecr_target(args.repository, args.region))
        print(push(args.image, target, args.tag, name))
    except RegistryError as exc:
        print(f"push: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

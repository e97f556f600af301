"""S3 for the SageMaker backend: channels up (skipping unchanged files), job outputs down
(archives extracted by :mod:`orchestration.archives`, keys confined to their folder)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..archives import extract_tar
from .settings import AwsError


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


def s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def list_prefix(s3: Any, uri: str) -> list[PurePosixPath]:
    """The keys under the S3 prefix ``uri``, relative to it; keys that would climb out of a
    folder they are written to (``..``, absolute) left out."""
    bucket, prefix = s3_parts(uri.rstrip("/") + "/")
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = PurePosixPath(obj["Key"][len(prefix):])
            if relative.parts and ".." not in relative.parts and not relative.is_absolute():
                found.append(relative)
    return found


def download_prefix(s3: Any, uri: str, dest: Path) -> int:
    """Every object under the S3 prefix ``uri`` into ``dest`` (never outside it); how many."""
    bucket, prefix = s3_parts(uri.rstrip("/") + "/")
    relatives = list_prefix(s3, uri)
    for relative in relatives:
        target = dest.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, prefix + relative.as_posix(), str(target))
    return len(relatives)


def download_tar(s3: Any, uri: str, dest: Path) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = s3_parts(uri)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive.tar.gz"
        try:
            s3.download_file(bucket, key, str(archive))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False  # the job wrote none (e.g. no output data)
            raise AwsError(f"cannot download {uri}: {exc}") from exc
        extract_tar(archive, dest)  # our checks, not tarfile's filter: see orchestration.archives
    return True

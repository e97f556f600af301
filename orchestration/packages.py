"""The model registry's words, shared by both backends: a model package is one version of a
model group, registered PendingManualApproval, then Approved or Rejected; only an Approved one is
deployed by ``dogctl deploy --package``. How a user names one: :func:`parse_reference`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dogbreed.errors import UserError

DEFAULT_GROUP = "dogbreed"
PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
LATEST, LATEST_APPROVED = "latest", "latest-approved"
GROUP_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # SageMaker's ModelPackageGroupName


def check_group(name: str) -> str:
    """A model group's name as SageMaker allows it (a safe file name locally), or one line."""
    if not GROUP_NAME.fullmatch(name):
        raise UserError(f"model group {name!r}: letters, digits and dashes, at most 63, not starting "
                        "or ending with a dash")
    return name


@dataclass(frozen=True)
class Reference:
    """Which package: ``version`` of ``group``, the newest (``version`` None), the newest
    approved (``approved``), or a SageMaker ARN."""

    group: str
    version: int | None = None
    approved: bool = False
    arn: str | None = None


def parse_reference(text: str, group: str = DEFAULT_GROUP) -> Reference:
    """``latest``, ``latest-approved``, ``N`` (a version of ``group``), ``GROUP/N`` or an ARN."""
    text = text.strip()
    if text.startswith("arn:"):
        if ":model-package/" not in text:
            raise UserError(f"{text}: not a model package ARN (arn:aws:sagemaker:...:model-package/GROUP/N)")
        return Reference(text.split(":model-package/", 1)[1].split("/")[0], arn=text)
    if text in (LATEST, LATEST_APPROVED):
        return Reference(check_group(group), approved=text == LATEST_APPROVED)
    named, _, version = text.rpartition("/")
    if version.isdigit() and int(version) > 0:
        return Reference(check_group(named or group), int(version))
    raise UserError(f"which package? {text!r}: use latest, latest-approved, a version number, GROUP/VERSION "
                    "or a model package ARN")


def must_be_approved(package: str, status: str) -> None:
    """``deploy --package`` serves approved packages only."""
    if status != APPROVED:
        raise UserError(f"model package {package} is {status}, not {APPROVED}: `dogctl approve {package}` "
                        "first (with --sagemaker on SageMaker)")

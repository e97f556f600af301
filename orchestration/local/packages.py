"""The local model registry: one JSON file per model group under ``WORKDIR/registry/``, each
version a model folder with its metrics and rule verdicts and an approval status, as SageMaker's
Model Registry keeps them (:mod:`orchestration.sagemaker.packages`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dogbreed.contract.artifact import ModelArtifact
from dogbreed.contract.jobdir import JobDir, JobDirError
from dogbreed.debugger.verdicts import load_verdicts
from dogbreed.errors import UserError
from dogbreed.files import atomic_write_bytes

from ..backend import Package, RegisterRequest, ReviewRequest
from ..packages import APPROVED, PENDING, REJECTED, check_group, parse_reference


def _file(workdir: Path, group: str) -> Path:
    return workdir / "registry" / f"{check_group(group)}.json"


def _versions(workdir: Path, group: str) -> list[dict[str, Any]]:
    path = _file(workdir, group)
    return json.loads(path.read_text())["versions"] if path.is_file() else []


def _save(workdir: Path, group: str, versions: list[dict[str, Any]]) -> None:
    path = _file(workdir, group)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps({"group": group, "versions": versions}, indent=1).encode())


def _package(group: str, entry: dict[str, Any], previous: str | None = None) -> Package:
    return Package(f"{group}/{entry['version']}", group, entry["version"], entry["status"], entry["model"],
                   entry.get("metrics", {}), entry.get("rules", {}), previous)


def register(workdir: Path, model: Path, request: RegisterRequest) -> Package:
    """``model`` (a model folder) as the next version of ``request.group``, pending approval."""
    artifact = ModelArtifact.read(model)  # a folder `train` wrote, or a clear error
    try:
        verdicts = load_verdicts(JobDir.find(model.parent)) or []
    except JobDirError:
        verdicts = []
    versions = _versions(workdir, request.group)
    entry = {"version": len(versions) + 1, "model": str(model.resolve()), "status": PENDING,
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "description": request.description or "", "metrics": dict(artifact.metadata.scores),
             "rules": {v.rule: v.verdict for v in verdicts}}
    _save(workdir, request.group, [*versions, entry])
    return _package(request.group, entry)


def find(workdir: Path, reference: str, group: str) -> tuple[Package, int]:
    """The package ``reference`` names (see :func:`parse_reference`), and its index in the file."""
    ref = parse_reference(reference, group)
    if ref.arn:
        raise UserError(f"{reference}: an ARN names a SageMaker package: add --sagemaker")
    versions = _versions(workdir, ref.group)
    matches = [i for i, e in enumerate(versions) if (ref.version is None or e["version"] == ref.version)
               and (not ref.approved or e["status"] == APPROVED)]
    if not matches:
        what = "approved version" if ref.approved else f"version {ref.version or ''}".rstrip()
        raise UserError(f"model group {ref.group!r} has no {what} under {workdir / 'registry'} "
                        "(`dogctl register` adds one)")
    return _package(ref.group, versions[matches[-1]]), matches[-1]


def review(workdir: Path, request: ReviewRequest) -> Package:
    found, index = find(workdir, request.package, request.group)
    versions = _versions(workdir, found.group)
    versions[index] = {**versions[index], "status": APPROVED if request.approve else REJECTED,
                       "note": request.note or ""}
    _save(workdir, found.group, versions)
    return _package(found.group, versions[index], previous=found.status)

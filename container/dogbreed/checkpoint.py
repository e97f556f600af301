"""Per-epoch checkpoints in /opt/ml/checkpoints, written atomically, resumed from the newest.

SageMaker syncs that folder with ``CheckpointConfig.S3Uri`` and copies it back
when a managed spot job restarts, so a restarted ``train`` carries on where the
last completed epoch left off.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import torch

from .opt_ml import atomic_write_bytes

log = logging.getLogger(__name__)
PATTERN = re.compile(r"^epoch-(\d{4,})\.pt$")
FORMAT_VERSION = 1


def path_for(directory: Path, epoch: int) -> Path:
    return directory / f"epoch-{epoch:04d}.pt"


def save(directory: Path, epoch: int, state: dict[str, Any]) -> Path:
    """Write ``state`` for ``epoch`` (temporary file, fsync, rename), then drop older ones."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, "epoch": epoch, **state}, buffer)
    path = path_for(directory, epoch)
    atomic_write_bytes(path, buffer.getvalue())
    for old, old_epoch in _listed(directory):
        if old_epoch < epoch:
            old.unlink(missing_ok=True)
    return path


def _listed(directory: Path) -> list[tuple[Path, int]]:
    if not directory.is_dir():
        return []
    found = [(p, int(m.group(1))) for p in directory.iterdir() if (m := PATTERN.match(p.name))]
    return sorted(found, key=lambda item: item[1], reverse=True)


def load_latest(directory: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint (an unreadable one is reported and passed over)."""
    for path, _ in _listed(directory):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged file must not stop the resume
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path.name, exc)
            continue
        if state.get("format_version") != FORMAT_VERSION:
            log.warning("checkpoint %s has an unknown format; ignoring it", path.name)
            continue
        return state
    return None

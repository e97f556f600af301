"""Per-epoch checkpoints in /opt/ml/checkpoints, written atomically, resumed from the newest.

SageMaker syncs that folder with ``CheckpointConfig.S3Uri`` and copies it back
when a managed spot job restarts, so a restarted ``train`` carries on where the
last completed epoch left off.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
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


class CheckpointMismatch(UserError):
    """The checkpoint folder holds a run with different settings."""


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], directory: Path) -> None:
    """Refuse to resume a run made with other settings, naming what differs."""
    if saved != current:
        raise CheckpointMismatch(
            f"the checkpoints in {directory} come from a run with other "
            f"settings ({_differences(saved, current)}); remove them to start afresh"
        )


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    changes = []
    old_hp, new_hp = old.get("hyperparameters", {}), new.get("hyperparameters", {})
    for key in sorted(set(old_hp) | set(new_hp)):
        if old_hp.get(key) != new_hp.get(key):
            changes.append(f"{key}: {old_hp.get(key)} -> {new_hp.get(key)}")
    for key in ("classes", "train_images", "world_size"):
        if old.get(key) != new.get(key):
            changes.append(f"{key} changed" if key == "classes" else
                           f"{key}: {old.get(key)} -> {new.get(key)}")
    return "; ".join(changes) or "format changed"


def cpu_copy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


@dataclass
class TrainingState:
    """The progress a checkpoint carries besides the model, optimizer and scaler."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(
        default_factory=lambda: {"epoch": 0, "valid_acc": -1.0, "valid_loss": math.inf})
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights, on the CPU
    stale_epochs: int = 0
    stopped_early: bool = False

    def update_best(self, epoch: int, record: dict[str, float], patience: int,
                    weights: Mapping[str, torch.Tensor]) -> None:
        """Keep ``weights`` if ``record`` beats the best valid_acc; else count a stale epoch
        (``patience`` of them in a row stop the run; 0: never)."""
        if record["valid_acc"] > self.best["valid_acc"]:
            self.best = {"epoch": epoch, "valid_acc": record["valid_acc"],
                         "valid_loss": record["valid_loss"]}
            self.best_state = cpu_copy(weights)
            self.stale_epochs = 0
        else:
            self.stale_epochs += 1
            self.stopped_early = bool(patience) and self.stale_epochs >= patience

    def to_checkpoint(self, epoch: int) -> dict[str, Any]:
        """The checkpoint's entries for ``epoch`` (the best weights only if not this epoch's)."""
        return {
            "step": self.step,
            "history": self.history,
            "best": self.best,
            "best_model": None if self.best["epoch"] == epoch else self.best_state,
            "stale_epochs": self.stale_epochs,
            "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> TrainingState:
        return cls(
            step=int(state["step"]),
            history=list(state["history"]),
            best=dict(state["best"]),
            best_state=state["best_model"] or cpu_copy(state["model"]),
            stale_epochs=int(state["stale_epochs"]),
            stopped_early=bool(state["stopped_early"]),
        )

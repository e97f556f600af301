"""Per-epoch checkpoints in /opt/ml/checkpoints, written atomically, resumed from the newest.

SageMaker syncs that folder with ``CheckpointConfig.S3Uri`` and copies it back
when a managed spot job restarts, so a restarted ``train`` carries on where the
last completed epoch left off.

A checkpoint holds the weights that train (:class:`ModelPart`): the whole model, or with a frozen
backbone (``finetune=head``) only ``fc`` and the SHA-256 of the backbone, which a resumed run
rebuilds (pretrained weights or seeded initialisation) and must match: a few kilobytes a
checkpoint instead of the whole ResNet18. Format 1 (the whole model always) is still read.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dogbreed.errors import UserError
from dogbreed.files import atomic_write_bytes

log = logging.getLogger(__name__)
PATTERN = re.compile(r"^epoch-(\d{4,})\.pt$")
FORMAT_VERSION = 2  # 2: a head-only run's checkpoint holds fc and the backbone's SHA-256
READABLE = (1, 2)
HEAD = "fc."  # the trained layer's names in the model's state dict


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
        if state.get("format_version") not in READABLE:
            log.warning("checkpoint %s has an unknown format; ignoring it", path.name)
            continue
        return _upgraded(state)
    return None


def _upgraded(state: dict[str, Any]) -> dict[str, Any]:
    """A format-1 checkpoint of a head-only run (the whole model) as format 2 holds it."""
    if state["format_version"] != 1 or state["fingerprint"]["hyperparameters"].get("finetune") != "head":
        return state
    model = state["model"]
    best = state.get("best_model")
    return {**state, "format_version": FORMAT_VERSION, "model": _head_of(model),
            "best_model": _head_of(best) if best else None,
            "backbone_sha256": tensors_sha256({k: v for k, v in model.items() if not k.startswith(HEAD)})}


def _head_of(model: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix(HEAD): v for k, v in model.items() if k.startswith(HEAD)}


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values, whatever device or layout."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\t{tensor.dtype}\t{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


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


class ModelPart:
    """The weights checkpoints carry and the best epoch keeps: ``model``'s, or with ``head_only``
    those of ``model.fc`` alone, the rest being frozen and checked by its SHA-256 on resume."""

    def __init__(self, model: nn.Module, head_only: bool):
        self.model, self.head_only = model, head_only
        self.trained: nn.Module = model.fc if head_only else model
        self._backbone_sha256: str | None = None

    def weights(self) -> dict[str, torch.Tensor]:
        return self.trained.state_dict()

    def load(self, weights: Mapping[str, torch.Tensor]) -> None:
        self.trained.load_state_dict(weights)

    def backbone_sha256(self) -> str:
        """The frozen backbone's digest (computed once: it does not change)."""
        if self._backbone_sha256 is None:
            self._backbone_sha256 = tensors_sha256(
                {k: v for k, v in self.model.state_dict().items() if not k.startswith(HEAD)})
        return self._backbone_sha256

    def entries(self) -> dict[str, Any]:
        """A checkpoint's model entries."""
        return {"model": self.weights(),
                "backbone_sha256": self.backbone_sha256() if self.head_only else None}

    def restore(self, state: dict[str, Any], directory: Path) -> None:
        """Load a checkpoint's weights; refuse one whose frozen backbone is not this run's."""
        if self.head_only and state.get("backbone_sha256") != self.backbone_sha256():
            raise CheckpointMismatch(
                f"the checkpoints in {directory} were made on another frozen backbone (other "
                "pretrained weights, or another initialisation); remove them to start afresh")
        self.load(state["model"])


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

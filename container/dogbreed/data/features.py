"""The frozen backbone's features, computed once and cached, for head-only training.

With ``finetune=head`` the backbone is frozen and in eval mode, so its pooled 512-d output for an
image is a fixed function of the image file, its preprocessing (and, for an augmented view, the
random draws of the augmentation), the weights and the software. ``train`` computes it once per
image and view and trains the final Linear layer on the stored features (:class:`FeatureStore`).

An entry holds one split's features for one view: the evaluation transform, or augmented view
``v`` of the training set, whose random draws for sample ``i`` are seeded by (seed, v, i) alone,
so the view does not depend on batch size, loader workers or processes. Its key
(:func:`entry_key`) covers what decides the numbers:

* the split's files: class names and, for every image, its path relative to the split's root,
  its label, size and modification time (a ``stat``, no read: the convention of make and rsync;
  an edit changes the size or the time, a fresh copy of the data misses, which is only slower);
* the transform (its parameters), the decoded size, the view and seed of an augmented view;
* the weights' SHA-256 (the file was verified against it before use), the precision and device
  type, the torch, torchvision and Pillow versions, and the source of the code that decodes,
  transforms and extracts (``images.py``, ``preprocess.py``, ``loader.py``, this file).

With ``DOGBREED_FEATURE_CACHE`` naming a folder, entries are files there (``<split>-<view>-<hash>.pt``),
shared by every run that points at it (``dogctl`` uses ``WORKDIR/feature-cache`` for its runs
and trials); without it they live in memory for the run, so a job still computes them once
instead of once per epoch. Writers write a temporary file and rename it: two runs that miss the
same entry both compute it and the last rename wins, with the same content; a reader sees a whole
file or none. Files are read with ``torch.load(weights_only=True)``, and one that does not load
or does not hold its own key is recomputed. Nothing is ever evicted: delete the folder to reclaim
the space (about 2 KB an image and view).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL
import torch
from torch import nn
from torch.utils.data import Dataset

from dogbreed.contract.environment import FEATURE_CACHE
from dogbreed.data.loader import Batch, ImageFolder
from dogbreed.data.preprocess import torchvision_version
from dogbreed.data.splits import Split
from dogbreed.files import atomic_write
from dogbreed.sources import source_digest

log = logging.getLogger(__name__)
FORMAT = 1  # of an entry; bump when what an entry holds changes
CODE_FILES = ("data/images.py", "data/preprocess.py", "data/loader.py", "data/features.py")
STALE_TMP_SECONDS = 3600  # a temporary file this old was left by a killed writer


@dataclass
class Features:
    """One split's features for one view: row ``r`` is ``split.samples[indices[r]]``; the images
    that could not be decoded are left out and described in ``undecodable``."""

    features: torch.Tensor  # (n, 512) float32, CPU
    labels: torch.Tensor  # (n,) int64
    indices: torch.Tensor  # (n,) int64, ascending
    undecodable: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def to_entry(self, key: dict[str, Any]) -> dict[str, Any]:
        return {"key": key, "features": self.features, "labels": self.labels, "indices": self.indices,
                "undecodable": self.undecodable}

    @classmethod
    def from_entry(cls, entry: Any, key: dict[str, Any]) -> Features:
        """The features of a loaded entry, checked against ``key``; ValueError if they do not fit."""
        if not isinstance(entry, dict) or entry.get("key") != key:
            raise ValueError("the entry holds another key")
        found = cls(entry["features"], entry["labels"], entry["indices"], list(entry["undecodable"]))
        n = len(found.labels)
        if found.features.dim() != 2 or len(found.features) != n or len(found.indices) != n:
            raise ValueError("the entry's tensors do not fit together")
        return found


def code_digest() -> str:
    """SHA-256 of the sources that decode, transform and extract: a change to them misses."""
    return source_digest(*CODE_FILES)


def entry_key(*, split: str, transform: str, decode_side: int, view: int | None, seed: int | None,
              weights_sha256: str, precision: str, device: str, code: str) -> dict[str, Any]:
    """Everything that decides an entry's numbers (``split``: :meth:`Split.digest`; ``transform``:
    a description of every parameter of the transform; ``view`` and ``seed``: None for the
    deterministic evaluation transform)."""
    return {"format": FORMAT, "split": split, "transform": transform, "decode_side": decode_side,
            "view": view, "seed": seed, "weights_sha256": weights_sha256, "precision": precision,
            "device": device, "torch": str(torch.__version__), "torchvision": torchvision_version(),
            "pillow": str(PIL.__version__), "code": code}


def entry_name(split_name: str, key: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    view = "eval" if key["view"] is None else f"view{key['view']}"
    return f"{split_name}-{view}-{digest}.pt"


def view_seed(seed: int, view: int, index: int) -> int:
    return ((seed * 1_000_003 + view) * 1_000_033 + index) % (2**63)


class SeededView(Dataset):
    """``images`` (an :class:`ImageFolder` with a random transform) with the random draws for
    sample ``i`` seeded by (``seed``, ``view``, ``i``): the same view whoever computes it."""

    def __init__(self, images: ImageFolder, seed: int, view: int):
        self.images, self.seed, self.view = images, seed, view

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(self.seed, self.view, index))
            return self.images[index]


def backbone_of(model: nn.Module) -> nn.Module:
    """ResNet18 up to the pooled, flattened features that ``fc`` takes (the model's own modules:
    ``model(x)`` equals ``model.fc(backbone_of(model)(x))``)."""
    return nn.Sequential(*(m for name, m in model.named_children() if name != "fc"), nn.Flatten(1))


@torch.inference_mode()
def extract(backbone: nn.Module, batches: Iterable[Batch], to_device: Callable[[torch.Tensor], torch.Tensor],
            autocast: Callable[[], Any]) -> Features:
    """The backbone's features of every decodable image of ``batches`` (in eval mode)."""
    backbone.eval()
    rows: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    indices: list[int] = []
    bad: list[str] = []
    for batch in batches:
        bad += batch.bad
        if batch.images.numel() == 0:
            continue
        with autocast():
            out = backbone(to_device(batch.images))
        rows.append(out.float().cpu())
        labels.append(batch.labels)
        indices += batch.indices
    width = rows[0].shape[1] if rows else 0
    return Features(torch.cat(rows) if rows else torch.empty(0, width),
                    torch.cat(labels) if labels else torch.empty(0, dtype=torch.long),
                    torch.tensor(indices, dtype=torch.long), bad)


def merge(parts: list[Features]) -> Features:
    """The shards of several processes as one, in sample order."""
    undecodable = [d for p in parts for d in p.undecodable]
    held = [p for p in parts if len(p)]
    if not held:
        return Features(parts[0].features, parts[0].labels, parts[0].indices, undecodable)
    indices = torch.cat([p.indices for p in held])
    order = torch.argsort(indices)
    return Features(torch.cat([p.features for p in held])[order], torch.cat([p.labels for p in held])[order],
                    indices[order], undecodable)


class FeatureCache:
    """Entries as files in ``directory`` (None: none; :class:`FeatureStore` keeps them in memory)."""

    def __init__(self, directory: Path | None):
        self.directory = directory

    def load(self, name: str, key: dict[str, Any]) -> Features | None:
        if self.directory is None:
            return None
        path = self.directory / name
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            return Features.from_entry(entry, key)
        except Exception as exc:  # noqa: BLE001 - a bad entry is only a miss: computed again
            log.warning("features: ignoring %s, which does not load (%s: %s); computing it again",
                        path, type(exc).__name__, exc)
            return None

    def save(self, name: str, key: dict[str, Any], features: Features) -> Path | None:
        """Write the entry atomically; None (and a warning) if the folder cannot take it."""
        if self.directory is None:
            return None
        path = self.directory / name
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._remove_stale(name)
            with atomic_write(path) as fh:
                torch.save(features.to_entry(key), fh)
            return path
        except OSError as exc:
            log.warning("features: could not write %s (%s); they are kept for this run only", path, exc)
            return None

    def _remove_stale(self, name: str) -> None:
        """Temporary files of this entry left by a writer that was killed."""
        assert self.directory is not None
        now = time.time()
        for tmp in self.directory.glob(f".{name}.*.tmp"):
            try:
                if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                    tmp.unlink()
            except OSError:
                pass


class FeatureStore:
    """The entries a run uses, each looked up or computed once and then kept in memory.

    ``compute`` turns a dataset into its :class:`Features` (all processes together);
    ``all_agree`` tells every process whether every process holds the entry (with several
    processes, all of them compute or none does); ``writes``: this process saves what it computes
    (one per host)."""

    def __init__(self, cache: FeatureCache, *, weights_sha256: str, precision: str, device: str, seed: int,
                 compute: Callable[[Dataset], Features],
                 all_agree: Callable[[bool], bool] = lambda held: held, writes: bool = True):
        self.cache, self.seed, self.compute = cache, seed, compute
        self.all_agree, self.writes = all_agree, writes
        self.common = {"weights_sha256": weights_sha256, "precision": precision, "device": device,
                       "code": code_digest()}
        self.memo: dict[tuple[str, int | None], Features] = {}

    def get(self, split: Split, images: ImageFolder, view: int | None = None) -> Features:
        """``split``'s features through ``images`` (its transform); ``view``: which augmented view
        (None: ``images`` is deterministic, the evaluation transform)."""
        memo = (split.name, view)
        if memo in self.memo:
            return self.memo[memo]
        key = entry_key(split=split.digest(), transform=repr(images.transform),
                        decode_side=images.decode_side, view=view,
                        seed=None if view is None else self.seed, **self.common)
        name = entry_name(split.name, key)
        what = split.name + ("" if view is None else f" view {view}")
        found = self.cache.load(name, key)
        if self.all_agree(found is not None):
            assert found is not None
            log.info("features: %s: cache hit (%s)", what, self.cache.directory / name)
        else:
            started = time.monotonic()
            found = self.compute(images if view is None else SeededView(images, self.seed, view))
            seconds = time.monotonic() - started
            saved = self.cache.save(name, key, found) if self.writes else None
            where = (f"saved to {saved}" if saved else
                     "kept in memory for this run" + ("" if self.cache.directory else
                                                      f" ({FEATURE_CACHE} would share them)"))
            log.info("features: %s: cache miss: %d images through the backbone in %.1fs, %s",
                     what, len(found), seconds, where)
        self.memo[memo] = found
        return found

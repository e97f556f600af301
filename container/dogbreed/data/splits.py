"""Image-folder datasets in the dogImages layout: ``<split>/NNN.Breed_name/*.jpg``.

Class names are the folder names in sorted order; every split must have the
same classes. Files that are not usable images are found before training
(:func:`scan_split`), reported, and skipped; a file that still fails to decode
later (a truncated JPEG passes the header check) is skipped by the loader and
counted, never crashing an epoch (:mod:`dogbreed.data.loader`). With a cache folder the header
checks of an unchanged split are not repeated (:mod:`dogbreed.data.scancache`). Scanning needs no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dogbreed.data.images import check_header
from dogbreed.data.scancache import ScanCache, fingerprint, listing_key
from dogbreed.errors import UserError

log = logging.getLogger(__name__)
SHOW_NAMES = 5  # how many offending file names a message lists


class DataError(UserError):
    """The dataset is not usable; the message says what to fix."""


@dataclass
class Split:
    """One scanned split: its classes, its usable samples and the files skipped."""

    name: str
    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    by_content: bool = False  # cache keys hash the files' contents (see digest)
    _digest: str | None = field(default=None, init=False, repr=False, compare=False)

    def digest(self) -> str:
        """SHA-256 of the classes and of every image's path relative to the root, label and
        :func:`~dogbreed.data.scancache.fingerprint` (size and mtime, or with ``by_content`` size and
        contents): what the feature and decoded-photo caches key on. Computed at the first call;
        the scan's files are taken to stay as they are for the run."""
        if self._digest is None:
            digest = hashlib.sha256(json.dumps(self.classes).encode())
            for path, label in self.samples:
                rel = os.path.relpath(path, self.root)
                digest.update(f"\n{rel}\t{label}\t{fingerprint(path, self.by_content)}".encode())
            self._digest = digest.hexdigest()
        return self._digest

    def counts(self) -> list[int]:
        out = [0] * len(self.classes)
        for _, label in self.samples:
            out[label] += 1
        return out

    def skipped_summary(self) -> str:
        names = ", ".join(f"{p} ({why})" for p, why in self.skipped[:SHOW_NAMES])
        more = f" and {len(self.skipped) - SHOW_NAMES} more" if len(self.skipped) > SHOW_NAMES else ""
        return f"{self.name}: skipped {len(self.skipped)} unusable file(s): {names}{more}"


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__MACOSX"


def find_classes(root: Path) -> list[str]:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and _visible(e.name))
    if not classes:
        loose = sorted(e.name for e in os.scandir(root) if _visible(e.name))[:SHOW_NAMES]
        raise DataError(
            f"no class folders in {root}: expected one sub-folder per breed "
            f"(e.g. 001.Affenpinscher/*.jpg), found {loose or 'nothing'}"
        )
    return classes


def _files(class_dir: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if _visible(f))
    return found


def scan_split(name: str, root: Path, *, check: bool = True, threads: int = 8,
               cache_dir: Path | None = None, by_content: bool = False) -> Split:
    """List ``root``'s classes and images; with ``check``, read every header to skip bad files
    (or, with ``cache_dir``, take the verdicts of an earlier scan of the very same files: the same
    stats, or with ``by_content`` the same contents)."""
    classes = find_classes(root)
    candidates = [(path, label) for label, c in enumerate(classes) for path in _files(root / c)]
    reasons: list[str | None] = [None] * len(candidates)
    if check and candidates:
        reasons = _checked(name, root, candidates, threads, cache_dir, by_content)
    split = Split(name=name, root=root, classes=classes, samples=[], by_content=by_content)
    for (path, label), reason in zip(candidates, reasons, strict=True):
        if reason is None:
            split.samples.append((str(path), label))
        else:
            split.skipped.append((str(path.relative_to(root)), reason))
    empty = [c for c, n in zip(classes, split.counts(), strict=True) if n == 0]
    if empty:
        listed = ", ".join(empty[:SHOW_NAMES]) + (" ..." if len(empty) > SHOW_NAMES else "")
        raise DataError(f"{name}: {len(empty)} class folder(s) without a usable image: {listed}")
    return split


def _checked(name: str, root: Path, candidates: list[tuple[Path, int]], threads: int,
             cache_dir: Path | None, by_content: bool) -> list[str | None]:
    """Each candidate's header verdict (None: usable), from the scan cache when it holds them."""
    cache = ScanCache(cache_dir) if cache_dir is not None else None
    key = listing_key(root, candidates, by_content) if cache is not None else None
    if cache is not None and key is not None and (skipped := cache.load(key)) is not None:
        log.info("%s: header checks of %d files: cache hit (%s)", name, len(candidates), cache.path(key))
        if not skipped:
            return [None] * len(candidates)
        return [skipped.get(str(path.relative_to(root))) for path, _ in candidates]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        reasons = list(pool.map(check_header, (p for p, _ in candidates), chunksize=64))
    if cache is not None and key is not None:
        bad = zip(candidates, reasons, strict=True)
        cache.save(key, {str(path.relative_to(root)): why for (path, _), why in bad if why is not None})
    return reasons


def check_same_classes(reference: Split, other: Split) -> None:
    if other.classes == reference.classes:
        return
    only_ref = sorted(set(reference.classes) - set(other.classes))
    only_other = sorted(set(other.classes) - set(reference.classes))

    def show(names: list[str]) -> str:
        return ", ".join(names[:SHOW_NAMES]) + (" ..." if len(names) > SHOW_NAMES else "") or "none"

    raise DataError(
        f"'{reference.name}' and '{other.name}' must have the same class folders: "
        f"{len(only_ref)} only in {reference.name} ({show(only_ref)}), "
        f"{len(only_other)} only in {other.name} ({show(only_other)})"
    )

"""Photos decoded once: a split's images as raw RGB pixels in one file, read back every epoch.

Decoding a JPEG is 40% of what the training loader does per photo (1.5 of 3.6 ms for a 500x375
photo at 224 px): ``train`` decodes each image of the training and validation splits once, at the
size the loader decodes it to (:func:`dogbreed.data.images.decode` with the split's ``decode_side``),
and its loader workers read the pixels from a memory map instead (``decode_cache``). An image read
back is the very image :func:`~dogbreed.data.images.decode` returns, pixel for pixel, so what trains
and what the backbone's cached features hold do not depend on this cache; one that cannot be
decoded gives the same :class:`~dogbreed.data.images.ImageError`.

An entry is two files in ``<DOGBREED_FEATURE_CACHE>/decoded/`` (or a temporary folder that the
run removes): ``NAME.pixels``, every image's HWC bytes one after another, and ``NAME.json``, its
key and each image's offset and size (or why it could not be decoded). The key covers the split's
files (:meth:`dogbreed.data.splits.Split.digest`: paths, labels, sizes, modification times), the
decoded side, the Pillow version and this code and ``images.py``. Both files are written under
temporary names and renamed, the index last: an entry is whole or absent. It needs the photos'
decoded size on disk (about 0.6 MB a dogImages photo at 224 px, 24 KB at 90 px): writing stops,
and the run decodes every epoch instead, when the disk would keep less than
:data:`MIN_FREE_BYTES` free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dogbreed.data.images import ImageError, decode
from dogbreed.files import atomic_write, atomic_write_bytes
from dogbreed.sources import source_digest

log = logging.getLogger(__name__)
FORMAT = 1
CODE_FILES = ("data/images.py", "data/decoded.py")
MIN_FREE_BYTES = 2 << 30  # what the cache leaves free on its disk
CHECK_BYTES = 256 << 20  # how often (bytes written) the free space is checked
PROGRESS_SECONDS = 15.0


def code_digest() -> str:
    return source_digest(*CODE_FILES)


def entry_key(split_digest: str, side: int) -> dict[str, Any]:
    return {"format": FORMAT, "split": split_digest, "decode_side": side, "pillow": str(PIL.__version__),
            "code": code_digest()}


class DecodedImages:
    """One split's decoded images: ``image(i)`` is ``decode(samples[i][0], side)``. Opens its
    memory map lazily, so that it pickles (a loader worker opens its own)."""

    def __init__(self, pixels: Path, index: np.ndarray, bad: dict[int, str]):
        self.pixels_path, self.index, self.bad = pixels, index, bad
        self._pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pixels": None}

    def image(self, i: int) -> Image.Image:
        if i in self.bad:
            raise ImageError(self.bad[i])
        if self._pixels is None:
            self._pixels = np.memmap(self.pixels_path, dtype=np.uint8, mode="r")
        offset, height, width = (int(v) for v in self.index[i])
        data = self._pixels[offset:offset + height * width * 3]
        return Image.frombuffer("RGB", (width, height), data, "raw", "RGB", 0, 1)


@dataclass
class _Decoded:
    index: int
    pixels: np.ndarray | None
    reason: str | None


class _Decoding(Dataset):
    """The images of ``paths`` decoded, for the loader workers that build an entry."""

    def __init__(self, paths: list[str], side: int):
        self.paths, self.side = paths, side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Decoded:
        try:
            return _Decoded(index, np.asarray(decode(self.paths[index], self.side)), None)
        except (ImageError, OSError) as exc:
            return _Decoded(index, None, str(exc))


def _unbatched(item: _Decoded) -> _Decoded:
    return item


class _DiskFull(Exception):
    """The disk would keep too little free space: the entry is abandoned after ``done`` photos."""

    def __init__(self, done: int):
        super().__init__(done)
        self.done = done


class DecodedCache:
    """Entries in ``directory``; ``workers`` loader processes decode a missing one, which is
    given up when its disk would keep less than ``keep_free`` bytes free."""

    def __init__(self, directory: Path, workers: int, keep_free: int = MIN_FREE_BYTES):
        self.directory, self.workers, self.keep_free = directory, workers, keep_free

    def get(self, name: str, paths: list[str], split_digest: str, side: int, *,
            writes: bool = True) -> DecodedImages | None:
        """The entry for ``paths`` at ``side``: loaded, or built when ``writes`` (None: not
        built, for want of disk or of the right to write; the caller decodes as before)."""
        key = entry_key(split_digest, side)
        stem = f"{name}-{side}-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]}"
        found = self._load(stem, key, len(paths))
        if found is not None:
            log.info("decoded images: %s: cache hit (%s)", name, self.directory / f"{stem}.pixels")
            return found
        if not writes:
            return None
        return self._build(name, stem, key, paths, side)

    def _load(self, stem: str, key: dict[str, Any], count: int) -> DecodedImages | None:
        meta, pixels = self.directory / f"{stem}.json", self.directory / f"{stem}.pixels"
        try:
            entry = json.loads(meta.read_text())
            index = np.asarray(entry["index"], dtype=np.int64).reshape(-1, 3)
            if entry.get("key") != key or len(index) != count or pixels.stat().st_size != entry["bytes"]:
                return None
            return DecodedImages(pixels, index, {int(i): why for i, why in entry["bad"].items()})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _build(self, name: str, stem: str, key: dict[str, Any], paths: list[str],
               side: int) -> DecodedImages | None:
        started = last = time.monotonic()
        meta, pixels = self.directory / f"{stem}.json", self.directory / f"{stem}.pixels"
        index = np.zeros((len(paths), 3), dtype=np.int64)
        bad: dict[int, str] = {}
        offset, checked = 0, -CHECK_BYTES
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # A generator of its own: a loader draws a seed, which must not come from torch's
            # global one (workers=0 augments with it: a run resumed mid-way must draw the same).
            loader = DataLoader(_Decoding(paths, side), batch_size=None, num_workers=self.workers,
                                collate_fn=_unbatched, prefetch_factor=8 if self.workers else None,
                                generator=torch.Generator())
            with atomic_write(pixels) as out:
                for done, item in enumerate(loader, 1):
                    if item.pixels is None:
                        bad[item.index] = item.reason or "could not be decoded"
                    else:
                        height, width = item.pixels.shape[:2]
                        index[item.index] = (offset, height, width)
                        out.write(np.ascontiguousarray(item.pixels).data)
                        offset += item.pixels.nbytes
                    if offset - checked >= CHECK_BYTES:
                        checked = offset
                        if shutil.disk_usage(self.directory).free < self.keep_free:
                            raise _DiskFull(done)
                    if time.monotonic() - last > PROGRESS_SECONDS:
                        last = time.monotonic()
                        log.info("decoded images: %s: %d of %d decoded (%.0f%%), %.0f s", name, done,
                                 len(paths), 100 * done / len(paths), last - started)
            atomic_write_bytes(meta, json.dumps({"key": key, "bytes": offset, "index": index.tolist(),
                                                 "bad": {str(i): why for i, why in bad.items()}}).encode())
        except _DiskFull as full:
            log.warning("decoded images: %s: stopped at %d of %d images: the disk under %s would keep less "
                        "than %.1f GiB free; decoding every epoch instead (decode_cache=false skips this)",
                        name, full.done, len(paths), self.directory, self.keep_free / (1 << 30))
            return None
        except OSError as exc:
            log.warning("decoded images: %s: could not write to %s (%s); decoding every epoch instead",
                        name, self.directory, exc)
            return None
        log.info("decoded images: %s: %d images decoded once in %.1f s (%.0f MB in %s)", name, len(paths),
                 time.monotonic() - started, offset / 1e6, pixels)
        return DecodedImages(pixels, index, bad)


TEMP_PREFIX = "dogbreed-decoded-"


def cache_folder(feature_cache: Path | None, pid: int) -> tuple[Path, bool]:
    """Where entries go, and whether the run must remove it: ``<feature cache>/decoded``, or a
    temporary folder named for the run's process ``pid`` (one distributed run's processes pass
    their launcher's and share it)."""
    if feature_cache is not None:
        return feature_cache / "decoded", False
    return Path(tempfile.gettempdir()) / f"{TEMP_PREFIX}{pid}", True


def remove_abandoned(parent: Path | None = None) -> list[Path]:
    """Remove the temporary folders whose run's process is gone (killed, so it could not remove
    its own); the folders removed."""
    removed = []
    for folder in sorted((parent or Path(tempfile.gettempdir())).glob(TEMP_PREFIX + "*")):
        pid = folder.name.removeprefix(TEMP_PREFIX)
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True

"""The header scan's verdicts, cached, so that a run on unchanged files opens none of them.

:func:`dogbreed.data.splits.scan_split` opens every image to check its header (about a second for the
9,285 dogImages files); a tuning study runs it once per trial on the same files. With
``DOGBREED_FEATURE_CACHE`` set, the verdicts are kept in its ``scans`` folder, one JSON file per
listing: its name and content hold the SHA-256 of every file's path relative to the split's root,
label, size and modification time (a ``stat``, no read: the feature cache's convention; in a warm
pool's folder, size and SHA-256 of the contents instead: :func:`fingerprint`), of the
checking code (``images.py``, ``data.py``) and of the Pillow version. Any change to the files
gives another key, so the split is checked again. A file is written to a temporary name and
renamed; one that does not parse or holds another key is ignored (and replaced).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import PIL

from dogbreed.files import atomic_write_bytes
from dogbreed.sources import source_digest

log = logging.getLogger(__name__)
FORMAT = 1
FOLDER = "scans"
CODE_FILES = ("data/images.py", "data/splits.py")


@functools.cache
def _content(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file's bytes, once per run for a file as it stands (size and mtime)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fingerprint(path: str, by_content: bool = False) -> str:
    """What a cache key holds of one file: its size and modification time (a ``stat``), or with
    ``by_content`` its size and SHA-256 (files copied anew, as each warm-pool job's channels are)."""
    st = os.stat(path)
    return f"{st.st_size}\t{_content(path, st.st_size, st.st_mtime_ns) if by_content else st.st_mtime_ns}"


def listing_key(root: Path, candidates: Sequence[tuple[Path, int]], by_content: bool = False) -> str | None:
    """SHA-256 of the checking code and of every candidate's relative path, label and
    :func:`fingerprint`; None if a file cannot be read (it is then checked, and reported, as usual)."""
    code = source_digest(*CODE_FILES)
    digest = hashlib.sha256(f"format {FORMAT}\npillow {PIL.__version__}\ncode {code}".encode())
    prefix = os.path.join(root, "")
    try:
        for path, label in candidates:
            name = str(path)
            rel = name[len(prefix):] if name.startswith(prefix) else os.path.relpath(name, root)
            digest.update(f"\n{rel}\t{label}\t{fingerprint(name, by_content)}".encode())
    except OSError:
        return None
    return digest.hexdigest()


class ScanCache:
    """Verdicts of scans in ``directory``: for a key, the unusable files (relative path -> reason)."""

    def __init__(self, directory: Path):
        self.directory = directory / FOLDER

    def path(self, key: str) -> Path:
        return self.directory / f"scan-{key[:32]}.json"

    def load(self, key: str) -> dict[str, str] | None:
        path = self.path(key)
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("scan cache: ignoring %s (%s); checking the files again", path, exc)
            return None
        skipped = entry.get("skipped") if isinstance(entry, dict) and entry.get("key") == key else None
        if not isinstance(skipped, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in skipped.items()):
            log.warning("scan cache: ignoring %s, which holds another key or no verdicts", path)
            return None
        return skipped

    def save(self, key: str, skipped: dict[str, str]) -> None:
        """Write atomically; a folder that cannot take it costs a warning, not the run."""
        path = self.path(key)
        try:
            atomic_write_bytes(path, json.dumps({"key": key, "skipped": skipped}).encode())
        except OSError as exc:
            log.warning("scan cache: could not write %s (%s)", path, exc)

"""The digest of some of this package's source files, which cache keys hold: a change to the code
that computes an entry makes it a miss."""

from __future__ import annotations

import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def source_digest(*names: str) -> str:
    """SHA-256 of the named files of this package (their names and contents, in order)."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    return digest.hexdigest()

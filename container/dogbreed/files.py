"""Files written whole or not at all: the one atomic-write helper of the package.

A reader (``serve``, a resumed run, SageMaker's checkpoint sync, another process sharing a cache)
sees either the old file or the complete new one, never a part: the bytes go to a temporary name
in the same folder (unique per host and process, so processes sharing a folder never collide),
are flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def temporary_name(path: Path) -> Path:
    """Where :func:`atomic_write` writes ``path`` first: ``.NAME.HOST.PID.tmp`` beside it."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through; renamed over ``path`` only when the block ends
    normally, removed when it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as fh:
        fh.write(data)


def plain_name(name: object) -> bool:
    """Whether ``name`` (read from a file that came from elsewhere) is a bare file name: a
    non-empty string with no folder part, not ``.`` or ``..``, no NUL."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name)


def inside(folder: Path, *names: object) -> Path | None:
    """``folder/names...`` when every name is a :func:`plain_name` and the path, links resolved,
    stays in ``folder``; None otherwise (file names from outside are never trusted as paths)."""
    if not names or not all(plain_name(n) for n in names):
        return None
    path = folder.joinpath(*names)  # type: ignore[arg-type]  # checked: every name is a str
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return None
    return path

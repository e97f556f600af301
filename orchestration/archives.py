"""Archives that come from outside (a dataset's zip, a SageMaker job's model.tar.gz and
output.tar.gz), extracted by our own checks rather than tarfile's "data" filter, which the
Python releases before 3.11.13 / 3.12.11 / 3.13.4 let crafted archives bypass (CVE-2025-4517).

Admitted: regular files and folders whose every path part is a plain name. Refused, before the
target is touched: links, devices and FIFOs, absolute paths, ``..``, backslashes, NUL, a drive
prefix, a name given twice (an overwrite), more than ``max_members`` members or ``max_bytes``
bytes, or a ratio to the archive's size that only a decompression bomb reaches. Everything is
written into a fresh folder beside the target, then renamed onto it: a refused archive leaves
nothing behind and raises one :class:`ArchiveError`.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from dogbreed.errors import UserError

MAX_BYTES = 50 * 10**9  # no real image dataset or job output here comes near
MAX_MEMBERS = 1_000_000  # dogImages has 8,351 photos
MAX_RATIO = 200  # uncompressed/compressed for the whole archive (JPEGs and weights are about 1)
SKIPPED_TOP = ("__MACOSX",)  # macOS's resource forks in zips made by Finder
CHUNK = 1 << 20

Progress = Callable[[int, int], None]  # (bytes written so far, bytes in all)


class ArchiveError(UserError):
    """An archive that is unreadable, unsafe or too big: refused, nothing extracted."""


def member_path(archive: Path, name: str) -> PurePosixPath:
    """The relative path ``name`` stands for inside the target; raise when any part is unsafe."""
    if not name or "\\" in name or "\0" in name or name.startswith("/"):
        raise ArchiveError(f"{archive.name}: member {name!r} has an unsafe path: refused")
    path = PurePosixPath(name)
    if ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"{archive.name}: member {name!r} points outside the folder: refused")
    return path


class _Plan:
    """The members to write, checked as they are listed: kinds, names, counts, bytes."""

    def __init__(self, archive: Path, max_members: int, max_bytes: int):
        self.archive, self.max_members, self.max_bytes = archive, max_members, max_bytes
        self.files: dict[PurePosixPath, int] = {}
        self.folders: set[PurePosixPath] = set()
        self.total = 0

    def add(self, name: str, *, folder: bool, regular: bool, size: int) -> PurePosixPath | None:
        if not (folder or regular):
            raise ArchiveError(f"{self.archive.name}: member {name!r} is a link, device or pipe: refused")
        path = member_path(self.archive, name)
        if not path.parts or path.parts[0] in SKIPPED_TOP:
            return None
        if len(self.files) + len(self.folders) >= self.max_members:
            raise ArchiveError(f"{self.archive.name}: more than {self.max_members:,} members: refused")
        clash = path in self.files or (not folder and path in self.folders)
        clash = clash or any(parent in self.files for parent in path.parents)
        if clash:
            raise ArchiveError(f"{self.archive.name}: member {name!r} is given twice (or as both a file "
                               "and a folder): refused")
        if folder:
            self.folders.add(path)
            return None
        self.total += size
        limit = min(self.max_bytes, MAX_RATIO * max(1, self.archive.stat().st_size))
        if self.total > limit:
            raise ArchiveError(f"{self.archive.name} would expand to more than {limit:,} bytes from "
                               f"{self.archive.stat().st_size:,}: refused as a decompression bomb")
        self.files[path] = size
        return path


def _write(source: IO[bytes], target: Path, size: int, written: Callable[[int], None]) -> None:
    """Copy at most ``size`` bytes (what the member declares) into a new file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    left = size
    with open(target, "xb") as out:  # "x": never through an existing file or link
        while left and (chunk := source.read(min(CHUNK, left))):
            out.write(chunk)
            left -= len(chunk)
            written(len(chunk))


def _into_place(fill: Callable[[Path], None], dest: Path) -> None:
    """Run ``fill`` on a fresh folder beside ``dest``, then put that folder in ``dest``'s place."""
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def _zip_members(zf: zipfile.ZipFile, plan: _Plan) -> Iterator[tuple[zipfile.ZipInfo, PurePosixPath]]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        regular = not info.is_dir() and kind in (0, stat.S_IFREG)  # 0: made on a system without modes
        path = plan.add(info.filename, folder=info.is_dir(), regular=regular, size=info.file_size)
        if path is not None:
            yield info, path


def extract_zip(archive: Path, dest: Path, *, progress: Progress | None = None,
                max_members: int = MAX_MEMBERS, max_bytes: int = MAX_BYTES) -> int:
    """Extract the zip ``archive`` as ``dest`` (replacing it); the bytes it holds."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{archive} is not a readable zip file: {exc}") from exc
    plan = _Plan(archive, max_members, max_bytes)
    with zf:
        members = list(_zip_members(zf, plan))  # every check before anything is written

        done = [0]

        def written(n: int) -> None:
            done[0] += n
            if progress:
                progress(done[0], plan.total)

        def fill(tmp: Path) -> None:
            for info, path in members:
                with zf.open(info) as src:
                    _write(src, tmp.joinpath(*path.parts), info.file_size, written)

        try:
            _into_place(fill, dest)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ArchiveError(f"{archive} is damaged: {exc}") from exc
    return plan.total


def extract_tar(archive: Path, dest: Path, *, max_members: int = MAX_MEMBERS,
                max_bytes: int = MAX_BYTES) -> int:
    """Extract the tar (gzip or not) ``archive`` as ``dest`` (replacing it); the bytes it holds."""
    plan = _Plan(archive, max_members, max_bytes)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            while (member := tar.next()) is not None:  # listed one at a time, counted as listed
                path = plan.add(member.name, folder=member.isdir(), regular=member.isreg(),
                                size=member.size)
                if path is not None:
                    members.append((member, path))

            def fill(tmp: Path) -> None:
                for member, path in members:
                    source = tar.extractfile(member)
                    assert source is not None  # a regular file's
                    _write(source, tmp.joinpath(*path.parts), member.size, lambda n: None)

            _into_place(fill, dest)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{archive.name} is not a readable tar archive: {exc}") from exc
    return plan.total

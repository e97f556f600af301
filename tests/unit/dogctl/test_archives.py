"""orchestration.archives on crafted archives: each hostile member is refused with one clear
error and nothing is written, inside the target or outside it."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from orchestration.archives import ArchiveError, extract_tar, extract_zip


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_a_job_archive_is_extracted_in_place_of_the_target(tmp_path):
    folder = tarfile.TarInfo("./examples")
    folder.type = tarfile.DIRTYPE
    archive = make_tar(tmp_path / "output.tar.gz", [folder, ("./examples/a.jpg", b"jpeg"),
                                                    ("evaluation.json", b"{}")])
    dest = tmp_path / "run" / "output" / "data"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("from an earlier download")
    assert extract_tar(archive, dest) == 6
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "evaluation.json", "examples", "examples/a.jpg"]
    assert (dest / "examples" / "a.jpg").read_bytes() == b"jpeg"
    assert [p.name for p in dest.parent.iterdir()] == ["data"]  # no partial folder left


HOSTILE = [
    ([("../evil.txt", b"x")], "points outside"),
    ([("ok/../../evil.txt", b"x")], "points outside"),
    ([("/tmp/evil.txt", b"x")], "unsafe path"),
    ([("a\\..\\evil.txt", b"x")], "unsafe path"),
    ([special("link", tarfile.SYMTYPE, "/etc"), ("link/evil.txt", b"x")], "link, device or pipe"),
    ([("a.txt", b"x"), special("hard", tarfile.LNKTYPE, "a.txt")], "link, device or pipe"),
    ([special("dev", tarfile.CHRTYPE)], "link, device or pipe"),
    ([special("fifo", tarfile.FIFOTYPE)], "link, device or pipe"),
    ([("model.pt", b"good"), ("model.pt", b"evil")], "given twice"),
    ([("a", b"file"), ("a/b", b"under a file")], "given twice"),
]


@pytest.mark.parametrize("members,fragment", HOSTILE)
def test_hostile_tar_members_are_refused_before_anything_is_written(tmp_path, members, fragment):
    archive = make_tar(tmp_path / "model.tar.gz", members)
    dest = tmp_path / "run" / "model"
    with pytest.raises(ArchiveError, match=fragment):
        extract_tar(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_tar_bomb_and_too_many_members_are_refused(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        info = tarfile.TarInfo("model.pt")
        info.size = 60_000_000
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ArchiveError, match="decompression bomb"):
        extract_tar(bomb, tmp_path / "out")
    many = make_tar(tmp_path / "many.tar", [(f"f{i}", b"") for i in range(5)], mode="w")
    with pytest.raises(ArchiveError, match="more than 4 members"):
        extract_tar(many, tmp_path / "out", max_members=4)
    assert extract_tar(many, tmp_path / "out", max_members=5) == 0
    assert not (tmp_path / "out.partial").exists()


def test_a_damaged_or_foreign_archive_is_one_error(tmp_path):
    (tmp_path / "x.tar.gz").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ArchiveError, match="not a readable tar"):
        extract_tar(tmp_path / "x.tar.gz", tmp_path / "out")
    good = make_tar(tmp_path / "cut.tar.gz", [("a.bin", bytes(range(256)) * 4000)])
    (tmp_path / "cut2.tar.gz").write_bytes(good.read_bytes()[:-600])
    with pytest.raises(ArchiveError):
        extract_tar(tmp_path / "cut2.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the duplicate is the point
def test_zip_members_get_the_same_checks(tmp_path):
    def zip_with(name: str, *, mode: int = stat.S_IFREG | 0o644) -> Path:
        path = tmp_path / f"{len(list(tmp_path.glob('*.zip')))}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("ok/a.jpg", b"x")
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, b"y")
        return path

    for archive, fragment in [(zip_with("../x"), "points outside"),
                              (zip_with("c:evil"), "points outside"),
                              (zip_with("l", mode=stat.S_IFLNK | 0o777), "link"),
                              (zip_with("p", mode=stat.S_IFIFO | 0o644), "link, device or pipe"),
                              (zip_with("ok/a.jpg"), "given twice"),
                              (zip_with("ok/a.jpg/b"), "given twice")]:
        with pytest.raises(ArchiveError, match=fragment):
            extract_zip(archive, tmp_path / "out")
        assert not (tmp_path / "out").exists()
    seen = []
    macos = zip_with("__MACOSX/._a")
    assert extract_zip(macos, tmp_path / "out", progress=lambda done, total: seen.append((done, total))) == 1
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["a.jpg", "ok"]
    assert seen == [(1, 1)]

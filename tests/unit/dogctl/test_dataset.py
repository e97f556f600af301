"""Dataset fetching and extraction (orchestration.dataset) on real files and real HTTP."""

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest

from local_test.testdata import make_class_folders, make_dataset
from orchestration import dataset as D
from orchestration.archives import ArchiveError
from tests.helpers import file_server, zip_folder


@pytest.fixture
def small(tmp_path) -> Path:
    return make_dataset(tmp_path / "src", classes=3, per_class=4, size=24,
                        splits={"train": 1.0, "valid": 1.0})


def test_zip_is_extracted_checked_and_given_a_test_split(tmp_path, small):
    archive = zip_folder(small, tmp_path / "dogs.zip")
    prepared = D.prepare(str(archive), tmp_path / "work")
    assert prepared.name == "dogs" and prepared.classes == 3
    assert prepared.counts["train"] == 12
    assert prepared.counts["valid"] + prepared.counts["test"] == 12
    assert prepared.counts["test"] >= 3  # at least one per class on each side
    root = tmp_path / "work" / "data" / "dogs" / "dogImages"
    assert prepared.channels == {"train": root / "train", "valid": root / "valid", "test": root / "test"}
    state = json.loads((tmp_path / "work" / "data" / "channels.json").read_text())
    assert D.load_prepared(tmp_path / "work").to_json() == state
    # Running again reuses the extraction and gives the same split.
    again = D.prepare(str(archive), tmp_path / "work")
    assert again.counts == prepared.counts


def test_a_folder_source_is_never_modified(tmp_path, small):
    before = sorted(p.relative_to(small) for p in small.rglob("*"))
    prepared = D.prepare(str(small), tmp_path / "work")
    assert sorted(p.relative_to(small) for p in small.rglob("*")) == before
    assert prepared.channels["train"] == small / "train"
    valid = {p.name for p in prepared.channels["valid"].rglob("*.jpg")}
    test = {p.name for p in prepared.channels["test"].rglob("*.jpg")}
    assert valid and test and not valid & test
    assert valid | test == {p.name for p in (small / "valid").rglob("*.jpg")}


def test_no_test_split_when_asked(tmp_path, small):
    prepared = D.prepare(str(small), tmp_path / "work", test_fraction=0)
    assert set(prepared.channels) == {"train", "valid"}


def unsafe_zip(path: Path, name: str, *, symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("dogImages/train/001.A/ok.jpg", b"x")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, b"/etc/passwd" if symlink else b"evil")
    return path


@pytest.mark.parametrize("name,symlink,fragment", [
    ("../evil.txt", False, "points outside"),
    ("dogImages/../../evil.txt", False, "points outside"),
    ("/tmp/evil.txt", False, "unsafe path"),
    ("dogImages\\..\\evil.txt", False, "unsafe path"),
    ("dogImages/train/001.A/link.jpg", True, "link, device or pipe"),
])
def test_unsafe_archives_are_refused_before_anything_is_written(tmp_path, name, symlink, fragment):
    archive = unsafe_zip(tmp_path / "bad.zip", name, symlink=symlink)
    work = tmp_path / "work"
    with pytest.raises(ArchiveError, match=fragment):
        D.prepare(str(archive), work)
    assert not (tmp_path / "evil.txt").exists()
    assert not (work / "data" / "bad").exists()


def test_decompression_bomb_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dogImages/train/001.A/big.jpg", b"\0" * 50_000_000)
    assert archive.stat().st_size < 200_000
    with pytest.raises(ArchiveError, match="decompression bomb"):
        D.prepare(str(archive), tmp_path / "work")


def test_not_a_zip_and_missing_source(tmp_path):
    (tmp_path / "x.zip").write_text("not a zip")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        D.prepare(str(tmp_path / "x.zip"), tmp_path / "work")
    with pytest.raises(D.DatasetError, match="does not exist"):
        D.prepare(str(tmp_path / "nothing.zip"), tmp_path / "work")


def test_wrong_layout_is_explained(tmp_path):
    (tmp_path / "flat" / "001.A").mkdir(parents=True)
    with pytest.raises(D.DatasetError, match="one folder per class.*or the dogImages layout"):
        D.prepare(str(tmp_path / "flat"), tmp_path / "work")


def test_url_download_resumes_and_checks_the_size(tmp_path, small):
    payload = zip_folder(small, tmp_path / "dogs.zip").read_bytes()
    with file_server(payload) as server:
        dest = tmp_path / "dl" / "dogs.zip"
        dest.parent.mkdir()
        Path(str(dest) + ".part").write_bytes(payload[:500])
        assert D.download(server.url, dest) == dest and dest.read_bytes() == payload
        assert server.ranges == ["bytes=500-"]
        with pytest.raises(D.DatasetError, match=f"is {len(payload):,} bytes, expected 123"):
            D.download(server.url, tmp_path / "dl" / "other.zip", expected_size=123)
        prepared = D.prepare(server.url, tmp_path / "work")
        assert prepared.counts["train"] == 12


def test_unreachable_url_says_what_to_do(tmp_path):
    with pytest.raises(D.DatasetError, match="without network access, pass a local copy"):
        D.download("http://127.0.0.1:9/dogImages.zip", tmp_path / "x.zip")


def test_a_known_url_is_checked_against_its_known_size(tmp_path, small, monkeypatch):
    """The real dogImages download is checked against its recorded size (it once compared that
    constant with itself): a server on loopback stands in for the URL, serving a short file."""
    payload = zip_folder(small, tmp_path / "dogs.zip").read_bytes()
    with file_server(payload) as server:
        monkeypatch.setitem(D.KNOWN_SIZES, server.url, D.KNOWN_SIZES[D.DOGIMAGES_URL])
        with pytest.raises(D.DatasetError, match=f"is {len(payload):,} bytes, expected 1,132,023,110"):
            D.download(server.url, tmp_path / "dl.zip")
    assert not (tmp_path / "dl.zip").exists()


def test_progress_lines_in_a_log(capsys):
    from orchestration.progress import Progress

    stream = io.StringIO()
    with Progress("copy", 100, stream=stream, every=0) as bar:
        bar.update(50)
        bar.update(50)
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("copy: [####################] 100.0% 100 B of 100 B")


def test_a_folder_of_class_folders_is_split_once_by_name_and_left_untouched(tmp_path):
    source = make_class_folders(tmp_path / "My Dogs", {"Golden retriever": 20, "pug": 20, "Ça va": 3})
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    prepared = D.prepare(str(source), tmp_path / "work", fractions=(0.2, 0.1))
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
    assert set(prepared.channels) == {"train", "valid", "test"} and prepared.classes == 3
    files = {split: {p.relative_to(path) for p in path.rglob("*") if p.is_file()}
             for split, path in prepared.channels.items()}
    train, valid, test = files["train"], files["valid"], files["test"]
    assert not (train & valid or train & test or valid & test)
    every = {p.relative_to(source) for p in source.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert files["train"] | files["valid"] | files["test"] == every
    for split in ("train", "valid", "test"):  # even the class of 3 has one photo in each split
        assert {p.parts[0] for p in files[split]} == {"Golden retriever", "pug", "Ça va"}
    assert prepared.skipped["train"] + prepared.skipped["valid"] + prepared.skipped["test"] == 1  # notes.txt
    assert 0.5 < prepared.counts["train"] / 43 < 0.9
    again = D.prepare(str(source), tmp_path / "work", fractions=(0.2, 0.1))
    assert again.counts == prepared.counts
    other = D.prepare(str(source), tmp_path / "work", fractions=(0.3, 0.0), test_fraction=0)
    assert set(other.channels) == {"train", "valid"} and other.counts["valid"] > prepared.counts["valid"]


def test_a_folder_in_no_known_layout_is_refused_in_one_line(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"x")
    with pytest.raises(D.DatasetError, match="one folder per class"):
        D.prepare(str(tmp_path / "flat"), tmp_path / "work")

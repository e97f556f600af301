import json
import logging
import os
import shutil

import pytest
import torch

from dogbreed.data.loader import ImageFolder, collate
from dogbreed.data.preprocess import eval_transform
from dogbreed.data.splits import DataError, check_same_classes, scan_split
from local_test.testdata import make_dataset


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "d", classes=3, per_class=4, size=32)


def test_classes_come_from_folders_in_order(data):
    split = scan_split("train", data / "train")
    assert split.classes == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
    assert split.counts() == [4, 4, 4] and not split.skipped


def test_unusable_files_are_skipped_and_reported(data):
    cls = data / "train" / "002.Afghan_hound"
    (cls / "notes.txt").write_text("a note")
    (cls / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (cls / ".DS_Store").write_bytes(b"\0\0")
    (data / "train" / ".ipynb_checkpoints").mkdir()
    split = scan_split("train", data / "train")
    assert len(split.classes) == 3 and split.counts() == [4, 4, 4]
    skipped = sorted(p for p, _ in split.skipped)
    assert skipped == ["002.Afghan_hound/broken.jpg", "002.Afghan_hound/notes.txt"]
    assert "skipped 2 unusable file(s)" in split.skipped_summary()


def test_empty_class_is_an_error(data):
    cls = data / "valid" / "003.Airedale_terrier"
    shutil.rmtree(cls)
    cls.mkdir()
    (cls / "x.jpg").write_text("not really")
    with pytest.raises(DataError, match="1 class folder.*without a usable image: 003.Airedale_terrier"):
        scan_split("valid", data / "valid")


def test_no_class_folders_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="no class folders"):
        scan_split("train", tmp_path)


def test_mismatched_classes_are_named(data):
    shutil.move(data / "valid" / "003.Airedale_terrier", data / "valid" / "003.Airedale")
    train, valid = scan_split("train", data / "train"), scan_split("valid", data / "valid")
    expected = r"1 only in train \(003.Airedale_terrier\), 1 only in valid \(003.Airedale\)"
    with pytest.raises(DataError, match=expected):
        check_same_classes(train, valid)


def test_truncated_image_passes_the_scan_but_is_skipped_by_the_loader(data):
    victim = next((data / "train" / "001.Affenpinscher").iterdir())
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size * 2 // 3])  # header intact
    split = scan_split("train", data / "train")
    dataset = ImageFolder(split.samples, eval_transform(32), 32)
    batch = [dataset[i] for i in range(len(dataset))]
    images, labels, indices, bad = collate(batch)
    assert len(bad) == 1 and victim.name in bad[0]
    assert images.shape == (11, 3, 32, 32) and labels.dtype == torch.long
    assert len(indices) == 11 and split.samples[indices[0]][1] == labels[0]


def _corrupt_keeping_size_and_time(path):
    """Overwrite ``path`` with garbage of the same size and modification time: only a read sees it."""
    st = path.stat()
    path.write_bytes(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_scan_cache_spares_the_headers_of_unchanged_files(data, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = scan_split("train", data / "train", cache_dir=cache)
    assert len(list((cache / "scans").glob("scan-*.json"))) == 1
    victim = sorted((data / "train").rglob("*.jpg"))[0]
    _corrupt_keeping_size_and_time(victim)
    # The same sizes and times: the cached verdicts are used, no file is opened.
    with caplog.at_level(logging.INFO, logger="dogbreed.data.splits"):
        again = scan_split("train", data / "train", cache_dir=cache)
    assert "cache hit" in caplog.text
    assert again.samples == first.samples and again.skipped == []
    # A new modification time: the split is checked again, and the new verdicts kept.
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 1))
    checked = scan_split("train", data / "train", cache_dir=cache)
    assert [p for p, _ in checked.skipped] == [str(victim.relative_to(data / "train"))]
    cached = scan_split("train", data / "train", cache_dir=cache)
    assert cached.skipped == checked.skipped and cached.samples == checked.samples
    assert len(list((cache / "scans").glob("scan-*.json"))) == 2
    assert scan_split("train", data / "train").skipped == checked.skipped  # without a cache


def test_a_damaged_scan_cache_file_is_checked_again(data, tmp_path, caplog):
    cache = tmp_path / "cache"
    scan_split("train", data / "train", cache_dir=cache)
    (entry,) = (cache / "scans").glob("scan-*.json")
    victim = sorted((data / "train").rglob("*.jpg"))[0]
    _corrupt_keeping_size_and_time(victim)
    for damage in ('{"truncated', '{"key": "another", "skipped": {}}', '[1, 2]'):
        entry.write_text(damage)
        with caplog.at_level(logging.WARNING, logger="dogbreed.data.scancache"):
            split = scan_split("train", data / "train", cache_dir=cache)
        assert "ignoring" in caplog.text
        assert [p for p, _ in split.skipped] == [str(victim.relative_to(data / "train"))]  # read again
        caplog.clear()
    assert json.loads(entry.read_text())["skipped"] == dict(split.skipped)  # replaced


def test_a_files_fingerprint_by_content_survives_a_new_copy_and_by_stat_does_not(tmp_path):
    import os

    from dogbreed.data.scancache import fingerprint

    first, second, other = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"
    first.write_bytes(b"photo" * 100)
    second.write_bytes(b"photo" * 100)
    other.write_bytes(b"phot0" * 100)
    os.utime(second, ns=(10**18, 10**18))
    assert fingerprint(str(first), by_content=True) == fingerprint(str(second), by_content=True)
    assert fingerprint(str(first), by_content=True) != fingerprint(str(other), by_content=True)
    assert fingerprint(str(first)) != fingerprint(str(second))  # the stat: the mtime differs
    assert fingerprint(str(first)).split("\t")[0] == "500"

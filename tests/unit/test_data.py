import shutil

import pytest
import torch

from dogbreed.data import DataError, check_same_classes, scan_split
from dogbreed.loader import ImageFolder, collate
from dogbreed.preprocess import eval_transform
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

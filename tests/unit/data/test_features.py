"""The pieces of the feature cache (dogbreed.data.features): the backbone, the key, the views, the files."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch

from dogbreed.data.features import (
    FeatureCache,
    Features,
    SeededView,
    backbone_of,
    entry_key,
    entry_name,
    merge,
)
from dogbreed.data.loader import ImageFolder
from dogbreed.data.preprocess import decode_side, train_transform
from dogbreed.data.splits import scan_split
from dogbreed.model.network import build
from local_test.testdata import make_dataset

KEY = {"split": "s", "transform": "t", "decode_side": 55, "view": None, "seed": None,
       "weights_sha256": "w", "precision": "float32", "device": "cpu", "code": "c"}


def features(rows: list[int]) -> Features:
    return Features(torch.tensor([[float(r)] * 4 for r in rows]), torch.tensor(rows) % 3,
                    torch.tensor(rows), [])


def test_the_model_is_its_head_on_the_backbone_exactly():
    torch.manual_seed(0)
    model = build(5, pretrained=False).eval()
    x = torch.randn(4, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(model(x), model.fc(backbone_of(model)(x)))
    assert backbone_of(model)(x).shape == (4, 512)


def test_every_part_of_the_key_names_another_entry():
    base = entry_name("train", entry_key(**KEY))
    assert base == entry_name("train", entry_key(**KEY))  # the same key, the same file
    assert base.startswith("train-eval-") and base.endswith(".pt")
    changes = {"split": "s2", "transform": "t2", "decode_side": 56, "view": 0, "seed": 1,
               "weights_sha256": "w2", "precision": "bfloat16", "device": "cuda", "code": "c2"}
    names = {entry_name("train", entry_key(**{**KEY, name: value})) for name, value in changes.items()}
    assert len(names) == len(changes) and base not in names
    assert entry_name("train", entry_key(**{**KEY, "view": 3, "seed": 0})).startswith("train-view3-")


def test_the_split_digest_follows_the_files_not_where_they_are(tmp_path):
    data = make_dataset(tmp_path / "a", classes=3, per_class=2, size=32)
    copy = tmp_path / "b"
    shutil.copytree(data, copy)  # copy2: the same sizes and modification times
    digest = scan_split("train", data / "train").digest()
    assert scan_split("train", copy / "train").digest() == digest
    (copy / "train").rename(tmp_path / "elsewhere")  # another root, the same files
    assert scan_split("train", tmp_path / "elsewhere").digest() == digest
    victim = sorted((data / "train").rglob("*.jpg"))[0]
    stat = victim.stat()
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched
    assert scan_split("train", data / "train").digest() != digest


def test_a_view_is_the_same_whoever_draws_it_and_in_whatever_order(tmp_path):
    data = make_dataset(tmp_path, classes=2, per_class=3, size=48)
    split = scan_split("train", data / "train")
    images = ImageFolder(split.samples, train_transform(32, True), decode_side(32, True))
    view = SeededView(images, seed=0, view=1)
    forward = [view[i][0] for i in range(len(view))]
    torch.manual_seed(123)  # the global generator's state does not matter
    backward = [view[i][0] for i in reversed(range(len(view)))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward, strict=True))
    other = SeededView(images, seed=0, view=2)
    assert not all(torch.equal(a, other[i][0]) for i, a in enumerate(forward))
    state = torch.get_rng_state()
    view[0]
    assert torch.equal(torch.get_rng_state(), state)  # a view leaves the global generator alone


def test_shards_merge_in_sample_order():
    merged = merge([features([0, 2, 4]), features([1, 3]), features([])])
    assert merged.indices.tolist() == [0, 1, 2, 3, 4]
    assert merged.features[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert merged.labels.tolist() == [0, 1, 2, 0, 1]


def test_an_entry_round_trips_and_a_bad_one_is_only_a_miss(tmp_path, caplog):
    cache = FeatureCache(tmp_path / "cache")
    key = entry_key(**KEY)
    found = Features(torch.randn(5, 512), torch.arange(5), torch.arange(5), ["x.jpg (bad)"])
    path = cache.save("valid-eval-x.pt", key, found)
    assert path == tmp_path / "cache" / "valid-eval-x.pt"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["valid-eval-x.pt"]  # no temporary file
    back = cache.load("valid-eval-x.pt", key)
    assert back is not None and torch.equal(back.features, found.features)
    assert back.undecodable == ["x.jpg (bad)"]
    assert cache.load("valid-eval-x.pt", entry_key(**{**KEY, "code": "other"})) is None  # another key
    assert cache.load("missing.pt", key) is None
    with caplog.at_level(logging.WARNING):
        path.write_bytes(path.read_bytes()[:1000])  # truncated
        assert cache.load("valid-eval-x.pt", key) is None
        torch.save({"key": key, "features": torch.zeros(2, 512), "labels": torch.zeros(3),
                    "indices": torch.zeros(2), "undecodable": []}, path)
        assert cache.load("valid-eval-x.pt", key) is None  # tensors that do not fit
    assert "computing it again" in caplog.text
    # A pickle that is not plain tensors and containers is refused by weights_only loading.
    torch.save({"key": key, "evil": Path("/")}, path)
    assert cache.load("valid-eval-x.pt", key) is None


def test_an_unwritable_cache_costs_only_a_warning(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = FeatureCache(blocker / "cache")
    with caplog.at_level(logging.WARNING):
        assert cache.save("e.pt", entry_key(**KEY), features([0, 1])) is None
    assert "kept for this run only" in caplog.text
    assert FeatureCache(None).save("e.pt", entry_key(**KEY), features([0])) is None

"""Photos decoded once (dogbreed.data.decoded): read back pixel for pixel as decode() gives them,
found again by key, rebuilt when a file changes, and given up when the disk is short."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dogbreed.data.decoded import DecodedCache, cache_folder, remove_abandoned
from dogbreed.data.images import ImageError, decode
from dogbreed.data.loader import ImageFolder, collate
from dogbreed.data.preprocess import train_transform
from dogbreed.data.splits import scan_split


def photos(folder: Path) -> list[str]:
    """A JPEG larger than the decoded side (decoded at reduced scale), a small one, a PNG with
    alpha, a 16-bit grayscale PNG, a JPEG rotated by its EXIF tag, and a truncated JPEG."""
    folder.mkdir()
    rng = np.random.default_rng(0)

    def pixels(h: int, w: int) -> np.ndarray:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    Image.fromarray(pixels(400, 520)).save(folder / "big.jpg", quality=90)
    Image.fromarray(pixels(40, 30)).save(folder / "small.jpg")
    Image.fromarray(rng.integers(0, 256, (50, 60, 4), dtype=np.uint8), "RGBA").save(folder / "alpha.png")
    Image.fromarray(rng.integers(0, 65535, (33, 47), dtype=np.uint16)).save(folder / "gray16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels(30, 70)).save(folder / "rotated.jpg", exif=exif)
    (folder / "truncated.jpg").write_bytes((folder / "big.jpg").read_bytes()[:3000])
    return sorted(str(p) for p in folder.iterdir())


@pytest.mark.parametrize("workers", [0, 1])
def test_images_read_back_are_the_decoded_images(tmp_path, workers):
    paths = photos(tmp_path / "photos")
    cache = DecodedCache(tmp_path / "cache", workers=workers)
    decoded = cache.get("train", paths, "digest", 96)
    assert decoded is not None and len(decoded) == len(paths)
    for i, path in enumerate(paths):
        try:
            expected = decode(path, 96)
        except ImageError as exc:
            with pytest.raises(ImageError) as raised:
                decoded.image(i)
            assert str(raised.value) == str(exc)
            continue
        got = decoded.image(i)
        assert (got.mode, got.size) == (expected.mode, expected.size), path
        assert np.array_equal(np.asarray(got), np.asarray(expected)), path
    big = paths.index(str(tmp_path / "photos" / "big.jpg"))
    assert decoded.image(big).size == (130, 100)  # 520x400, decoded at a quarter of its scale


def test_a_second_look_up_is_a_hit_and_a_changed_split_misses(tmp_path, caplog):
    paths = photos(tmp_path / "photos")
    cache = DecodedCache(tmp_path / "cache", workers=0)
    cache.get("train", paths, "digest", 96)
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    assert sorted(Path(n).suffix for n in written) == [".json", ".pixels"]
    with caplog.at_level(logging.INFO, logger="dogbreed.data.decoded"):
        again = cache.get("train", paths, "digest", 96)
    assert again is not None and "cache hit" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == written
    # Another side, other files (another digest) or a process that may not write: no hit.
    assert DecodedCache(tmp_path / "cache", 0).get("train", paths, "other", 96, writes=False) is None
    assert DecodedCache(tmp_path / "cache", 0).get("train", paths, "digest", 64, writes=False) is None
    # An entry whose pixel file lost bytes is not used.
    pixels = next((tmp_path / "cache").glob("*.pixels"))
    pixels.write_bytes(pixels.read_bytes()[:-1])
    assert cache.get("train", paths, "digest", 96, writes=False) is None


def test_an_edited_photo_changes_the_split_digest_and_so_the_entry(tmp_path):
    root = tmp_path / "split"
    (root / "001.A").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (20, 20), "red").save(root / "001.A" / name)
    before = scan_split("train", root).digest()
    Image.new("RGB", (20, 21), "blue").save(root / "001.A" / "b.jpg")
    os.utime(root / "001.A" / "b.jpg", ns=(1, 1))
    assert scan_split("train", root).digest() != before


def test_the_loader_reads_the_same_batches_from_the_cache_in_worker_processes(tmp_path):
    paths = photos(tmp_path / "photos")
    samples = [(p, i % 2) for i, p in enumerate(paths)]
    decoded = DecodedCache(tmp_path / "cache", workers=0).get("train", paths, "digest", 96)
    batches = []
    for cached in (None, decoded):
        images = ImageFolder(samples, train_transform(48, True), 96, cached)
        torch.manual_seed(0)
        batches.append(list(DataLoader(images, batch_size=3, num_workers=1, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(0))))
    for plain, cached in zip(*batches, strict=True):
        assert torch.equal(plain.images, cached.images) and plain.indices == cached.indices
        assert plain.bad == cached.bad
    assert any("truncated.jpg" in b for batch in batches[1] for b in batch.bad)


def test_a_disk_that_would_fill_up_stops_the_cache_and_leaves_nothing(tmp_path, caplog):
    paths = photos(tmp_path / "photos")
    free = shutil.disk_usage(tmp_path).free
    cache = DecodedCache(tmp_path / "cache", workers=0, keep_free=free + (1 << 30))
    with caplog.at_level(logging.WARNING, logger="dogbreed.data.decoded"):
        assert cache.get("train", paths, "digest", 96) is None
    assert "would keep less than" in caplog.text and "decoding every epoch instead" in caplog.text
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_folder_is_the_feature_cache_or_a_temporary_one_per_run():
    assert cache_folder(Path("/c"), 7) == (Path("/c/decoded"), False)
    folder, temporary = cache_folder(None, 7)
    assert temporary and folder.name == "dogbreed-decoded-7"


def test_temporary_folders_of_killed_runs_are_removed_and_live_ones_kept(tmp_path):
    ended = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    dead = tmp_path / f"dogbreed-decoded-{int(ended.stdout)}"
    live = tmp_path / f"dogbreed-decoded-{os.getpid()}"
    other = tmp_path / "dogbreed-decoded-notapid"
    for folder in (dead, live, other):
        (folder / "sub").mkdir(parents=True)
    assert remove_abandoned(tmp_path) == [dead]
    assert not dead.exists() and live.exists() and other.exists()


def test_building_an_entry_leaves_torchs_global_random_state_alone(tmp_path):
    """A run resumed mid-way builds the entry in a later epoch than the run it resumes: the
    augmentation's draws (from torch's global generator when workers=0) must not move."""
    paths = photos(tmp_path / "photos")
    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert DecodedCache(tmp_path / "cache", workers=0).get("train", paths, "digest", 96) is not None
    assert torch.equal(torch.get_rng_state(), before)

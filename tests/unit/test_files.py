"""The one atomic-write helper: a reader sees the old file or the whole new one, never a part."""

import pytest

from dogbreed.files import atomic_write, atomic_write_bytes, temporary_name


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "model.pt"
    atomic_write_bytes(path, b"old")
    with atomic_write(path) as fh:
        fh.write(b"new ")
        assert path.read_bytes() == b"old"  # not yet
        fh.write(b"bytes")
    assert path.read_bytes() == b"new bytes"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]


def test_a_write_that_raises_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "entry.pixels"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError), atomic_write(path) as fh:
        fh.write(b"half")
        fh.flush()
        assert temporary_name(path).read_bytes() == b"half"
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert not temporary_name(path).exists()

import hashlib
from pathlib import Path

import pytest
import torch

from dogbreed.model import weights as W
from tests.helpers import file_server


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv(W.ENV_PATH, raising=False)
    monkeypatch.delenv(W.ENV_SHA256, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(W, "IMAGE_DIR", tmp_path / "image-weights")
    return monkeypatch


def test_missing_weights_say_where_they_were_looked_for(clean_env, tmp_path):
    with pytest.raises(W.WeightsError) as err:
        W.load_imagenet_state()
    message = str(err.value)
    assert "pretrained=false" in message and W.FILENAME in message
    assert str(tmp_path / "torch-home") in message and str(tmp_path / "image-weights") in message


def test_the_real_file_is_checked_by_size_then_hash(clean_env, tmp_path):
    fake = tmp_path / "torch-home" / "hub" / "checkpoints" / W.FILENAME
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"x" * 100)
    with pytest.raises(W.WeightsError, match="is 100 bytes, expected 46,830,571"):
        W.load_imagenet_state()
    fake.write_bytes(b"x" * W.SIZE)
    with pytest.raises(W.WeightsError, match="refusing to use it"):
        W.load_imagenet_state()


def test_standin_is_loaded_with_its_own_hash(clean_env, standin):
    path, sha = standin
    clean_env.setenv(W.ENV_PATH, str(path))
    with pytest.raises(W.WeightsError, match="expected 46,830,571"):
        W.load_imagenet_state()  # without the override only the real file is accepted
    clean_env.setenv(W.ENV_SHA256, sha)
    state = W.load_imagenet_state()
    assert "fc.weight" in state and state["conv1.weight"].shape == (64, 3, 7, 7)


def test_a_pickle_that_is_not_a_state_dict_is_refused(clean_env, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # needs full unpickling: refused
    clean_env.setenv(W.ENV_PATH, str(path))
    clean_env.setenv(W.ENV_SHA256, hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(W.WeightsError, match="could not be loaded as a state dict"):
        W.load_imagenet_state()


def test_download_verifies_over_real_http(clean_env, tmp_path, standin):
    path, sha = standin
    payload = Path(path).read_bytes()
    with file_server(payload) as server:
        dest = tmp_path / "dl"
        dest.mkdir()
        (dest / (W.FILENAME.replace(".pth", ".part"))).write_bytes(b"a partial download, replaced")
        clean_env.setenv(W.ENV_SHA256, sha)
        out = W.download(dest, server.url)
        assert out == dest / W.FILENAME and out.read_bytes() == payload
        assert W.download(dest, server.url) == out and len(server.ranges) == 1  # present: not fetched
        clean_env.setenv(W.ENV_SHA256, "0" * 64)
        (dest / W.FILENAME).unlink()
        with pytest.raises(W.WeightsError, match="refusing"):
            W.download(dest, server.url)
        assert not any(dest.iterdir())  # a bad download leaves nothing behind

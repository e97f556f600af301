"""`make demo`'s workflow (orchestration/demo.py) as a real process: with ImageNet weights (a
stand-in file served on loopback, the real one cannot be fetched here) it tunes and trains the head
on cached features; without them it says why in one line and trains from scratch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from local_test.testdata import make_dataset
from tests.helpers import file_server, free_port, zip_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SMALL = ["--hp", "image_size=32", "--hp", "epochs=1", "--hp", "batch_size=8",
         "--hp", "int8_calibration_images=0"]


def demo(work, data, *args, env):
    command = [sys.executable, "-m", "orchestration.demo", "--workdir", str(work), "--data", str(data),
               "--port", str(free_port()), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=280)


@pytest.fixture
def data(tmp_path):
    return zip_folder(make_dataset(tmp_path / "src", classes=3, per_class=8, size=40,
                                   splits={"train": 1.0, "valid": 0.75}), tmp_path / "dogs.zip")


@pytest.fixture
def clean_env():
    mine = ("DOGBREED_", "DOGCTL_", "OPT_ML", "SAGEMAKER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
    return {**env, "DOGCTL_RUNNER": "process", "PYTHONUNBUFFERED": "1"}


@pytest.mark.timeout(600)
def test_with_imagenet_weights_the_demo_fine_tunes_on_cached_features(tmp_path, data, standin, clean_env):
    path, sha = standin
    with file_server(path.read_bytes()) as server:
        out = demo(tmp_path / "work", data, "--trials", "2", "--weights-url", server.url, *SMALL,
                   env={**clean_env, "DOGBREED_WEIGHTS_SHA256": sha})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    weights = tmp_path / "work" / "weights" / "resnet18-f37072fd.pth"
    assert weights.read_bytes() == path.read_bytes()
    assert f"demo: ImageNet weights {weights}: fine-tuning the final layer" in out.stdout
    assert "--hp finetune=head" in out.stdout and "tune --name demo --trials 2" in out.stdout
    assert "demo: sending 3 photo(s): " in out.stdout
    assert "demo: done (pretrained): test accuracy " in out.stdout
    assert "demo: report " in out.stdout and "xdg-open" in out.stdout


@pytest.mark.timeout(600)
def test_without_weights_the_demo_says_why_and_trains_from_scratch(tmp_path, data, clean_env):
    out = demo(tmp_path / "work", data, "--trials", "0", "--weights-url", "http://127.0.0.1:9/resnet18.pth",
               *SMALL, env=clean_env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    said = [line for line in out.stdout.splitlines() if "could not be fetched" in line]
    assert len(said) == 1 and "training from random weights" in said[0]
    assert "--hp pretrained=false" in out.stdout and "finetune=head" not in out.stdout
    assert "demo: done (from scratch): test accuracy " in out.stdout

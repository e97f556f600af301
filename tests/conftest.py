"""Shared fixtures: generated datasets, stand-in weights, /opt/ml trees."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import boto3
import pytest

from local_test.testdata import make_dataset, make_standin_weights, write_opt_ml
from tests.helpers import BIN, BUCKET, FAST_HP, free_port, run_train, use_credentials, wait_http


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker (and every process it starts: `train`, `serve`, dogctl)
    gets its own share of the cores, as dogctl gives tuning trials theirs: the programs size
    their threads to their cores, so parallel tests do not oversubscribe the CPU."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    if not worker:
        return
    cores = sorted(os.sched_getaffinity(0))
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw"))
    share = {c for i, c in enumerate(cores) if i % count == index % count} or set(cores)
    os.sched_setaffinity(0, share)


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, sha256) of a generated ResNet18 state dict standing in for the ImageNet file."""
    path = tmp_path_factory.mktemp("weights") / "resnet18-standin.pth"
    return path, make_standin_weights(path)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dataset"), classes=3, per_class=8, size=48)


@pytest.fixture
def train_env(standin: tuple[Path, str]) -> dict[str, str]:
    """Environment for `train` as a process: the stand-in weights accepted by their own hash
    (dogctl's local runs as processes too: the weights are a host file)."""
    path, sha = standin
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOGBREED_", "OPT_ML", "DOGCTL_"))}
    env.update(DOGBREED_WEIGHTS=str(path), DOGBREED_WEIGHTS_SHA256=sha, PYTHONUNBUFFERED="1",
               DOGCTL_RUNNER="process")
    return env


@pytest.fixture
def opt_ml(tmp_path: Path, dataset: Path):
    """Factory: an /opt/ml tree in tmp_path on the shared dataset (or another one)."""

    def make(hyperparameters: dict[str, str] | None = None, data: Path | None = None,
             **kwargs) -> Path:
        hp = dict(FAST_HP if hyperparameters is None else hyperparameters)
        return write_opt_ml(tmp_path / "opt_ml", data or dataset, hp, **kwargs)

    return make


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def sample_photos() -> list[Path]:
    """The real full-size photos in ../shared/data/sample-images."""
    photos = sorted((SHARED / "sample-images").glob("*.jpg"))
    assert photos, f"no photos in {SHARED / 'sample-images'}: ../shared must be beside the checkout"
    return photos


@pytest.fixture(scope="session")
def trained_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data of :func:`trained_model`: 20 drawings a class, enough to learn every class
    (8 were not, on one core: a fresh drawing could be misread)."""
    return make_dataset(tmp_path_factory.mktemp("trained-data"), classes=3, per_class=20, size=48)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, trained_data: Path) -> Path:
    """A model folder written by the real `train` (2 epochs on the generated classes, which it
    learns: 100% valid accuracy)."""
    root = write_opt_ml(tmp_path_factory.mktemp("trained") / "opt_ml", trained_data, FAST_HP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOGBREED_", "OPT_ML"))}
    result = run_train(root, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "model"


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory):
    """moto's server on a free loopback port: AWS APIs over real HTTP (AWS_ENDPOINT_URL). Its
    request recorder writes to a temporary file, not into the checkout."""
    port = free_port()
    recording = tmp_path_factory.mktemp("moto") / "recording"
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MOTO_RECORDER_FILEPATH": str(recording)})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/moto-api/", proc, what="moto_server")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def aws(moto, monkeypatch, tmp_path):
    """An AWS configuration that points at the moto server, and nothing from this machine."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "DOGCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Every test starts from an empty account: what an earlier test on this worker created is gone.
    urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=30)
    return monkeypatch



@pytest.fixture
def recording(aws, moto):
    """moto with credentials, the jobs bucket, and its request recorder on (see helpers.recorded)."""
    use_credentials(aws)
    for verb in ("reset-recording", "start-recording"):
        urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/recorder/{verb}", method="POST"))
    s3 = boto3.client("s3")
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield moto
    urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/recorder/stop-recording", method="POST"))

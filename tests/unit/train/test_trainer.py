"""The training loop in-process: a real Trainer on a few generated photos in a temporary /opt/ml
(ResNet18 at 32 px, one process), no subprocess and no mock. The subprocess tests
(tests/e2e/test_train.py) keep what only a process shows: exit codes, the failure file, signals
and ranks."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from dogbreed.contract.artifact import ModelArtifact
from dogbreed.contract.hyperparameters import parse
from dogbreed.contract.opt_ml import OptML
from dogbreed.train import checkpoint
from dogbreed.train.callbacks import Callback, EpochProgress
from dogbreed.train.distributed import World
from dogbreed.train.main import stop_on_sigterm
from dogbreed.train.trainer import Trainer, TrainingStopped
from local_test.testdata import make_dataset, write_opt_ml

HP = {"epochs": "2", "batch_size": "4", "image_size": "32", "pretrained": "false", "progress_seconds": "0",
      "lr": "0.001", "workers": "0", "int8_calibration_images": "0", "decode_cache": "false",
      "profiler_interval_ms": "0"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("photos"), classes=3, per_class=6, size=40)


def opt_ml(tmp_path: Path, dataset: Path, **hp: str) -> OptML:
    return OptML(write_opt_ml(tmp_path / "opt_ml", dataset, {**HP, **hp}))


def trainer(opt: OptML, callbacks: list[Callback] = ()) -> Trainer:
    return Trainer(opt, parse(opt.raw_hyperparameters()), World(), callbacks)


class Steps(Callback):
    """Records every step the loop reports (epoch, step, batch)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def step_end(self, progress: EpochProgress, step: int) -> None:
        self.seen.append((progress.epoch, step, progress.batch))


def test_a_run_trains_every_step_then_writes_the_model_and_evaluation(tmp_path, dataset):
    opt = opt_ml(tmp_path, dataset)
    steps = Steps()
    run = trainer(opt, [steps])
    scores = run.run()
    per_epoch = run.params.steps_per_epoch(len(run.splits["train"].samples))
    assert [s for _, s, _ in steps.seen] == list(range(2 * per_epoch))
    assert [e for e, _, _ in steps.seen] == [1] * per_epoch + [2] * per_epoch
    artifact = ModelArtifact.read(opt.model_dir)
    assert artifact.metadata.metrics["selected_epoch"] in (1, 2)
    assert {"valid_acc", "test_acc"} <= set(scores)
    assert len(artifact.metadata.history) == 2
    evaluation = json.loads((opt.output_data_dir / "evaluation.json").read_text())
    assert set(evaluation) >= {"valid", "test"}
    assert [p.name for p in opt.checkpoint_dir.iterdir()] == ["epoch-0002.pt"]


def test_the_cosine_schedule_ends_at_zero_and_is_in_the_checkpoint(tmp_path, dataset):
    opt = opt_ml(tmp_path, dataset, epochs="2")
    run = trainer(opt)
    run.run()
    history = run.state.history
    assert history[0]["lr"] == pytest.approx(0.001 * 0.5)  # half-way through the run
    assert history[1]["lr"] == pytest.approx(0.0, abs=1e-12)
    saved = checkpoint.load_latest(opt.checkpoint_dir)
    assert saved["scheduler"]["last_epoch"] == saved["step"] == run.state.step


class TerminateAt(Callback):
    """Sends this process SIGTERM at ``batch`` of ``epoch``, as SageMaker stops a job."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def step_end(self, progress: EpochProgress, step: int) -> None:
        if (progress.epoch, progress.batch) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_run_stopped_then_resumed_ends_with_the_weights_of_an_unbroken_one(tmp_path, dataset):
    unbroken = opt_ml(tmp_path / "a", dataset, epochs="3")
    trainer(unbroken).run()
    broken = opt_ml(tmp_path / "b", dataset, epochs="3")
    with stop_on_sigterm(), pytest.raises(TrainingStopped):
        trainer(broken, [TerminateAt(epoch=3, batch=1)]).run()
    resumed = trainer(broken)
    assert resumed.resume() == 3
    assert resumed.optimisation.lr == pytest.approx(resumed.state.history[-1]["lr"])
    resumed.run()
    a = torch.load(unbroken.model_dir / "model.pt", weights_only=True)
    b = torch.load(broken.model_dir / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[h["train_loss"] for h in ModelArtifact.read(opt.model_dir).metadata.history]
              for opt in (unbroken, broken)]
    assert losses[0] == losses[1]


def test_sigterm_mid_epoch_saves_the_best_epoch_so_far(tmp_path, dataset):
    opt = opt_ml(tmp_path, dataset, epochs="3")
    with stop_on_sigterm(), pytest.raises(TrainingStopped) as stopped:
        trainer(opt, [TerminateAt(epoch=2, batch=2)]).run()
    assert "the best model so far (epoch 1" in stopped.value.saved
    meta = ModelArtifact.read(opt.model_dir).metadata
    assert meta.training["stopped_by_sigterm"] and meta.metrics["selected_epoch"] == 1
    assert [p.name for p in opt.checkpoint_dir.iterdir()] == ["epoch-0001.pt"]
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # the context restored it


def test_sigterm_before_any_epoch_keeps_no_model(tmp_path, dataset):
    opt = opt_ml(tmp_path, dataset)
    with stop_on_sigterm(), pytest.raises(TrainingStopped) as stopped:
        trainer(opt, [TerminateAt(epoch=1, batch=1)]).run()
    assert stopped.value.saved == "no epoch had finished: no model written"
    assert not (opt.model_dir / "model.pt").exists()


def test_head_only_on_features_trains_the_same_batches_as_on_photos(tmp_path, dataset, standin, monkeypatch):
    """finetune=head with one unaugmented view: the cached features give each step the same rows
    as the photos would, so both runs end with the same head (up to float rounding)."""
    monkeypatch.setenv("DOGBREED_WEIGHTS", str(standin[0]))
    monkeypatch.setenv("DOGBREED_WEIGHTS_SHA256", standin[1])
    common = {"finetune": "head", "pretrained": "true", "augment": "false", "epochs": "2"}
    features = trainer(opt_ml(tmp_path / "f", dataset, feature_views="1", **common))
    photos = trainer(opt_ml(tmp_path / "p", dataset, feature_views="0", **common))
    assert features.network.head is features.network.model.fc and photos.network.head is photos.network.model
    features.run()
    photos.run()
    for name, value in features.network.model.fc.state_dict().items():
        assert torch.allclose(value, photos.network.model.fc.state_dict()[name], atol=1e-4), name
    assert features.state.history[-1]["valid_acc"] == pytest.approx(photos.state.history[-1]["valid_acc"])
    saved = checkpoint.load_latest(features.opt.checkpoint_dir)
    assert set(saved["model"]) == {"weight", "bias"} and saved["backbone_sha256"]


def test_early_stopping_ends_the_run_after_patience_stale_epochs(tmp_path, dataset):
    opt = opt_ml(tmp_path, dataset, epochs="6", patience="1", lr="1e-8")
    run = trainer(opt)
    run.run()
    assert run.state.stopped_early
    assert len(run.state.history) < 6


def test_a_second_job_in_a_warm_pool_finds_the_first_jobs_caches(tmp_path, dataset, standin, monkeypatch,
                                                                 caplog):
    """SageMaker downloads each job's channels again (new files, new mtimes) onto the warm pool's
    instances: the caches in its folder key on contents, so the second job hits them; keyed on
    stats, as DOGBREED_FEATURE_CACHE's are, it would miss."""
    import logging
    import shutil

    monkeypatch.setenv("DOGBREED_WEIGHTS", str(standin[0]))
    monkeypatch.setenv("DOGBREED_WEIGHTS_SHA256", standin[1])
    warm = tmp_path / "warmpool" / "dogbreed"
    hp = {**HP, "finetune": "head", "pretrained": "true", "augment": "false", "epochs": "1"}

    def job(n: int, by_content: bool) -> str:
        download = tmp_path / f"download-{n}"
        shutil.copytree(dataset, download)
        for path in download.rglob("*.png"):
            os.utime(path, ns=(n * 10**18, n * 10**18))  # what a fresh download gives: other mtimes
        opt = OptML(write_opt_ml(tmp_path / f"job-{n}" / "opt_ml", download, hp), warm, by_content)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dogbreed"):
            trainer(opt).run()
        return caplog.text

    first = job(1, by_content=True)
    assert "features: train" in first and "cache miss" in first
    second = job(2, by_content=True)
    assert "header checks of" in second and "cache hit" in second
    assert "cache miss" not in second
    by_stats = job(3, by_content=False)
    assert "cache miss" in by_stats

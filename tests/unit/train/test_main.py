"""What a failed run says: the failure file's first line for every kind of failure, and the exit
code, in-process (tests/e2e/test_train.py checks the same through real `train` processes)."""

from __future__ import annotations

import pytest
import torch

from dogbreed.contract.opt_ml import OptML
from dogbreed.errors import UserError
from dogbreed.train.distributed import WorkerFailed
from dogbreed.train.main import describe_failure, report_failure
from dogbreed.train.trainer import TrainingStopped


@pytest.mark.parametrize("exc,reason", [
    (UserError("channel 'valid' is missing"), "channel 'valid' is missing"),
    (WorkerFailed("training worker 1 was killed by SIGKILL", "details"),
     "training worker 1 was killed by SIGKILL"),
    (torch.cuda.OutOfMemoryError("CUDA out of memory"),
     "GPU out of memory: lower batch_size (or image_size)"),
    (MemoryError(), "out of host memory: lower batch_size or workers"),
    (KeyError("fc.weight"), "internal error: KeyError: 'fc.weight'"),
])
def test_each_failure_is_described_in_one_line(exc, reason):
    assert describe_failure(exc) == reason


def test_a_stopped_run_says_what_it_kept_and_that_it_can_carry_on():
    said = describe_failure(TrainingStopped("the best model so far (epoch 2, valid_acc 0.5000) is in /m"))
    assert said.startswith("training stopped by SIGTERM")
    assert "the best model so far (epoch 2" in said
    assert said.endswith("the checkpoints let a restart carry on")
    assert "; ;" not in describe_failure(TrainingStopped())


def test_the_failure_file_holds_the_reason_first_and_the_code_follows_the_kind(tmp_path):
    opt = OptML(tmp_path)
    try:
        raise UserError("hyperparameter 'lr': expected a number")
    except UserError as exc:
        assert report_failure(exc, opt, None) == 1
    assert opt.failure_file.read_text().splitlines()[0] == "hyperparameter 'lr': expected a number"
    assert report_failure(KeyboardInterrupt(), opt, None) == 143
    assert opt.failure_file.read_text().startswith("training stopped by SIGTERM")


def test_a_job_naming_a_script_outside_its_source_directory_fails_instead_of_running_it(tmp_path,
                                                                                       monkeypatch):
    import json

    from dogbreed.train.main import main

    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"sagemaker_program": '"/opt/ml/input/data/train/evil.py"'}))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.delenv("OPT_ML", raising=False)
    assert main([]) == 1
    assert OptML(tmp_path).failure_file.read_text().startswith(
        "sagemaker_program='/opt/ml/input/data/train/evil.py': the script must be a path inside")

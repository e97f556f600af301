"""`dogctl data` and `dogctl train --local` as a user runs them: real processes, real files."""

import subprocess

import pytest

from local_test.testdata import make_class_folders, make_dataset
from tests.helpers import BIN, free_port, zip_folder

pytestmark = pytest.mark.e2e
DOGCTL = str(BIN / "dogctl")


def dogctl(*args, env=None, cwd=None):
    return subprocess.run([DOGCTL, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_data_then_train_locally(tmp_path, train_env):
    data = make_dataset(tmp_path / "src", classes=3, per_class=8, size=40,
                        splits={"train": 1.0, "valid": 0.75})
    archive = zip_folder(data, tmp_path / "dogs.zip")
    work = tmp_path / "work"
    out = dogctl("--workdir", str(work), "data", "--source", str(archive), env=train_env)
    assert out.returncode == 0, out.stderr
    assert "data: 3 classes" in out.stdout and "train     24 images" in out.stdout
    # auto: no container engine here (ENGINE names none), so a process, and the user is told why.
    out = dogctl("--workdir", str(work), "train", "--local", "--name", "t1", "--hp", "epochs=2",
                 "--hp", "image_size=40", "--hp", "batch_size=8", "--hp", "pretrained=false",
                 "--runner", "auto", env={**train_env, "ENGINE": "no-such-engine"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "train: running as a process: ENGINE=no-such-engine: no such command\n" in out.stdout
    assert "epoch=2/2" in out.stdout and "train: done in" in out.stdout
    run = work / "runs" / "t1"
    assert (run / "opt_ml" / "model" / "model.pt").is_file()
    assert "epoch=2/2" in (run / "train.log").read_text()
    # The debugger is on by default: tensors, rule verdicts and the report.
    assert "train: debugger on: tensors at steps 0-9 and every 1 steps (of 6)" in out.stdout
    report = run / "opt_ml" / "output" / "data" / "report.html"
    assert f"train: report in {report}" in out.stdout
    assert any((run / "opt_ml" / "output" / "tensors").rglob("*.tfevents"))
    report.unlink()
    again = dogctl("--workdir", str(work), "report", str(run), env=train_env)
    assert again.returncode == 0, again.stderr
    assert report.is_file() and again.stdout.strip().endswith(f"report: {report}")
    assert "  VanishingGradient" in again.stdout


def test_errors_are_one_line_not_tracebacks(tmp_path, train_env):
    work = str(tmp_path / "work")
    no_data = dogctl("--workdir", work, "train", "--hp", "epochs=2", env=train_env)
    assert no_data.returncode == 2 and "run `dogctl data` first" in no_data.stderr
    for command in ("train", "tune"):
        no_engine = dogctl("--workdir", work, command, "--runner", "container",
                           env={**train_env, "ENGINE": "no-such-engine"})
        assert no_engine.returncode == 2
        assert no_engine.stderr == (f"dogctl {command}: error: ENGINE=no-such-engine: no such command "
                                    "(or use --runner process)\n")
    bad_hp = dogctl("--workdir", work, "train", "--hp", "lr=fast", env=train_env)
    assert bad_hp.returncode == 2
    assert bad_hp.stderr.strip() == ("dogctl train: error: hyperparameter 'lr': got 'fast'; allowed: "
                                     "a number from 1e-08 to 1.0")
    missing = dogctl("--workdir", work, "data", "--source", str(tmp_path / "missing.zip"), env=train_env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    no_job = dogctl("--workdir", work, "report", str(tmp_path), env=train_env)
    assert no_job.returncode == 2 and "is not a finished training job" in no_job.stderr
    for result in (no_data, bad_hp, missing, no_job):
        assert "Traceback" not in result.stderr


def test_a_failed_training_run_points_at_its_log(tmp_path, train_env):
    data = make_dataset(tmp_path / "src", classes=2, per_class=3, size=32)
    work = str(tmp_path / "work")
    assert dogctl("--workdir", work, "data", "--source", str(data), env=train_env).returncode == 0
    env = {**train_env, "DOGBREED_WEIGHTS": str(tmp_path / "none.pth")}
    out = dogctl("--workdir", work, "train", "--hp", "epochs=1", "--hp", "image_size=32", "--no-debugger",
                 env=env)
    assert out.returncode == 1 and "debugger on" not in out.stdout
    assert "train: failed after" in out.stderr and "weights are not here" in out.stderr
    assert "train.log" in out.stderr


@pytest.mark.slow
def test_a_folder_of_class_folders_trains_and_serves(tmp_path, train_env):
    """Photos as people keep them (one folder per class, no split, messy names and formats) go
    through dogctl data, train, deploy and invoke."""
    source = make_class_folders(tmp_path / "My Dogs", {"Golden retriever": 12, "pug": 12, "Ça va": 12})
    work = tmp_path / "work"
    out = dogctl("--workdir", str(work), "data", "--source", str(source), env=train_env)
    assert out.returncode == 0, out.stderr
    assert "data: 3 classes" in out.stdout
    out = dogctl("--workdir", str(work), "train", "--name", "own", "--hp", "epochs=1",
                 "--hp", "image_size=32", "--hp", "batch_size=8", "--hp", "pretrained=false",
                 "--no-debugger", "--runner", "process", env=train_env)
    assert out.returncode == 0, out.stdout + out.stderr
    port = str(free_port())
    up = dogctl("--workdir", str(work), "deploy", "--port", port, env=train_env)
    assert up.returncode == 0, up.stderr
    try:
        photo = next((source / "pug").glob("*.png"))
        answer = dogctl("--workdir", str(work), "invoke", str(photo), "--top-k", "3", env=train_env)
        assert answer.returncode == 0, answer.stderr
        assert all(breed in answer.stdout for breed in ("Golden retriever", "pug", "Ça va"))
        listed = dogctl("--workdir", str(work), "resources", env=train_env).stdout.splitlines()
        assert listed[0] == f"resources: 1 running or billing (this machine, {work}):"
        assert listed[1].split()[:3] == ["endpoint", "dogbreed-local", "running"]
        assert listed[1].endswith(f"http://127.0.0.1:{port}")
    finally:
        assert dogctl("--workdir", str(work), "teardown", env=train_env).returncode == 0
    gone = dogctl("--workdir", str(work), "resources", env=train_env)
    assert gone.stdout == f"resources: nothing of dogctl's runs or bills (this machine, {work})\n"

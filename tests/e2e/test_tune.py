"""The local backend end to end: data from a zip, `dogctl tune` (an Optuna study whose trials are
real `train` runs, resumed), training with the best and the debugger hook, then deploy, invoke,
evaluate and teardown of the real `serve`."""

from __future__ import annotations

import json
import os
import re
import subprocess

import optuna
import psutil
import pytest

from dogbreed.contract.hyperparameters import parse
from local_test.testdata import make_dataset
from tests.helpers import BIN, free_port, zip_folder

pytestmark = pytest.mark.e2e


def dogctl(work, *args, env, timeout=900):
    return subprocess.run([str(BIN / "dogctl"), "--workdir", str(work), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_the_local_workflow_end_to_end(tmp_path, train_env, sample_photos):
    data = make_dataset(tmp_path / "src", classes=3, per_class=8, size=32)
    archive = zip_folder(data, tmp_path / "dogImages.zip")
    work = tmp_path / "work"
    prepared = dogctl(work, "data", "--source", str(archive), env=train_env)
    assert prepared.returncode == 0, prepared.stderr
    common = ["tune", "--parallel", "2", "--hp", "pretrained=false", "--hp", "image_size=32",
              "--range", "epochs=1:2", "--range", "batch_size=4|8"]
    out = dogctl(work, *common, "--trials", "4", env=train_env)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("trial "))
    table = lines[header + 1:header + 5]
    assert len(table) == 4 and all(re.match(r"trial-00\d ", row) for row in table)
    values = [float(row.split()[2]) for row in table if row.split()[2] != "-"]
    assert values == sorted(values, reverse=True)  # best first
    assert "starts:" in out.stdout and "epoch 1: valid_acc=" in out.stdout
    assert "tune: study 'tune': 4 trials\n" in out.stdout

    best_file = work / "tuning" / "tune" / "best-hyperparameters.json"
    best = json.loads(best_file.read_text())
    params = parse(best)  # every value is a valid hyperparameter
    assert params.pretrained is False and params.image_size == 32 and params.epochs in (1, 2)
    assert best["batch_size"] in ("4", "8") and 1e-5 <= params.lr <= 1e-2
    # A trial's model is never served: no int8 model calibrated for it, and none left out of the
    # final model trained from the best file.
    trial_models = list((work / "tuning" / "tune").rglob("metadata.json"))
    assert len(trial_models) == 4 and all(json.loads(m.read_text())["int8"] == {} for m in trial_models)
    assert not list((work / "tuning" / "tune").rglob("model_int8.pt"))
    assert "int8_calibration_images" not in best

    again = dogctl(work, *common, "--trials", "5", env=train_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming study 'tune': 4 of 5 trials done" in again.stdout
    assert again.stdout.count(" starts: ") == 1  # only the missing trial ran
    summary = json.loads((work / "tuning" / "tune" / "tuning.json").read_text())
    assert len(summary["trials"]) == 5 and summary["objective"] == "valid_acc"

    run = dogctl(work, "train", "--name", "best", "--hyperparameters", str(best_file),
                 "--debug-interval", "2", env=train_env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "debugger on: tensors at steps 0-9 and every 2 steps" in run.stdout
    opt_ml = work / "runs" / "best" / "opt_ml"
    assert any((opt_ml / "output" / "tensors").rglob("*.tfevents"))
    report = (opt_ml / "output" / "data" / "report.html").read_text()
    assert "Hyperparameter tuning: 5 trials" in report
    assert json.loads((opt_ml / "model" / "metadata.json").read_text())["int8"]["calibration_images"] == 24
    assert (opt_ml / "model" / "model_int8.pt").is_file()

    port = str(free_port())
    up = dogctl(work, "deploy", "--port", port, env=train_env)  # the newest model: this run's
    assert up.returncode == 0, up.stderr
    assert str(opt_ml / "model") in up.stdout
    try:
        photo = dogctl(work, "invoke", str(sample_photos[0]), env=train_env)
        assert photo.returncode == 0, photo.stderr
        assert re.match(rf"{re.escape(str(sample_photos[0]))}: .+ \d+\.\d%", photo.stdout)
        evaluated = dogctl(work, "evaluate", env=train_env)
        assert evaluated.returncode == 0, evaluated.stderr
        test_acc = json.loads((opt_ml / "model" / "metadata.json").read_text())["metrics"]["test_acc"]
        assert f"accuracy {100 * test_acc:.1f}%" in evaluated.stdout
    finally:
        down = dogctl(work, "teardown", env=train_env)
    assert down.returncode == 0 and "stopped" in down.stdout
    summary = dogctl(work, "summary", env=train_env)
    assert summary.returncode == 0, summary.stderr
    assert "summary: data dogImages: 3 classes; train 24" in summary.stdout
    assert "summary: tuning 'tune': 5 trials; best trial-" in summary.stdout
    assert f"summary: model {opt_ml / 'model'} (epoch " in summary.stdout
    assert f"summary: report {opt_ml / 'output' / 'data' / 'report.html'}" in summary.stdout


def test_tune_rejects_an_unknown_name_in_one_line(tmp_path, train_env):
    out = dogctl(tmp_path / "work", "tune", "--tune", "lr,colour", env=train_env)
    assert out.returncode == 2 and out.stderr.startswith("dogctl tune: error: not tunable: colour")
    bad = dogctl(tmp_path / "work", "tune", "--range", "lr=big", env=train_env)
    assert bad.returncode == 2 and "--range takes NAME=LOW:HIGH[:log]" in bad.stderr


@pytest.mark.slow
def test_sigterm_stops_every_trial_and_the_study_resumes(tmp_path, train_env):
    data = make_dataset(tmp_path / "src", classes=3, per_class=8, size=32)
    work = tmp_path / "work"
    assert dogctl(work, "data", "--source", str(data), env=train_env).returncode == 0
    common = ["tune", "--name", "cut", "--trials", "2", "--parallel", "2", "--tune", "lr",
              "--hp", "pretrained=false", "--hp", "image_size=32", "--hp", "batch_size=8"]
    proc = subprocess.Popen([str(BIN / "dogctl"), "--workdir", str(work), *common, "--hp", "epochs=200",
                             "--hp", "patience=0"],
                            env=train_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, started = [], set()
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if m := re.match(r"tune: (trial-\d+) epoch 1:", line):
            started.add(m.group(1))
            if len(started) == 2:
                break
    trains = psutil.Process(proc.pid).children(recursive=True)
    assert len([p for p in trains if "dogbreed.train" in " ".join(p.cmdline())]) == 2, "".join(seen)
    proc.terminate()  # SIGTERM to dogctl alone, as a scheduler or `kill` sends it
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, "".join(seen) + rest
    assert "dogctl tune: terminated (SIGTERM)" in rest
    gone, alive = psutil.wait_procs(trains, timeout=30)
    assert not alive, f"still running: {alive}"
    # The two stopped trials failed; they do not count, so the study runs two more.
    again = dogctl(work, *common, "--hp", "epochs=1", env=train_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming study 'cut': 0 of 2 trials done" in again.stdout
    summary = json.loads((work / "tuning" / "cut" / "tuning.json").read_text())
    assert sorted(t["status"] for t in summary["trials"]) == ["complete", "complete", "fail", "fail"]


def test_dogctl_stop_ends_a_running_study_and_its_trials(tmp_path, train_env):
    data = make_dataset(tmp_path / "src", classes=3, per_class=8, size=32)
    work = tmp_path / "work"
    assert dogctl(work, "data", "--source", str(data), env=train_env).returncode == 0
    nothing = dogctl(work, "stop", "long", env=train_env)
    assert nothing.returncode == 2 and "nothing named 'long' is running" in nothing.stderr
    proc = subprocess.Popen([str(BIN / "dogctl"), "--workdir", str(work), "tune", "--name", "long",
                             "--trials", "1", "--parallel", "1", "--tune", "lr", "--hp", "pretrained=false",
                             "--hp", "image_size=32", "--hp", "batch_size=8", "--hp", "epochs=200",
                             "--hp", "patience=0"],
                            env=train_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "epoch 1:" in line:
            break
    trains = [p for p in psutil.Process(proc.pid).children(recursive=True)
              if "dogbreed.train" in " ".join(p.cmdline())]
    assert len(trains) == 1, "".join(seen)
    out = dogctl(work, "stop", "long", env=train_env, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stop: 'long' stopped; its checkpoints are kept" in out.stdout
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 143, "".join(seen) + rest
    assert not psutil.wait_procs(trains, timeout=30)[1]
    assert not (work / "tuning" / "long" / "dogctl.pid").exists()


def test_a_trial_left_running_by_a_killed_dogctl_counts_as_failed(tmp_path, train_env):
    data = make_dataset(tmp_path / "src", classes=3, per_class=8, size=32)
    work = tmp_path / "work"
    assert dogctl(work, "data", "--source", str(data), env=train_env).returncode == 0
    folder = work / "tuning" / "left"
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name="left", storage=f"sqlite:///{folder / 'study.db'}",
                                direction="maximize")
    study.ask()  # what a SIGKILLed dogctl leaves behind: a trial still marked running
    args = ["tune", "--name", "left", "--trials", "1", "--parallel", "1", "--tune", "lr", "--hp",
            "pretrained=false", "--hp", "image_size=32", "--hp", "batch_size=8", "--hp", "epochs=1"]
    (folder / "dogctl.pid").write_text(f"{os.getpid()}\n")  # a live process holds the study
    busy = dogctl(work, *args, env=train_env)
    assert busy.returncode == 2
    assert f"study 'left' is running already (dogctl pid {os.getpid()})" in busy.stderr
    (folder / "dogctl.pid").unlink()
    out = dogctl(work, *args, env=train_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tune: trial-000 was left running by a stopped dogctl: counted as failed" in out.stdout
    summary = json.loads((folder / "tuning.json").read_text())
    assert sorted(t["status"] for t in summary["trials"]) == ["complete", "fail"]


def test_a_head_only_study_runs_the_backbone_once_for_all_its_trials(tmp_path, train_env):
    data = make_dataset(tmp_path / "src", classes=3, per_class=8, size=32)
    work = tmp_path / "work"
    assert dogctl(work, "data", "--source", str(data), env=train_env).returncode == 0
    out = dogctl(work, "tune", "--trials", "2", "--parallel", "1", "--tune", "lr", "--hp", "pretrained=true",
                 "--hp", "finetune=head", "--hp", "image_size=32", "--hp", "batch_size=8", "--hp", "epochs=2",
                 env=train_env)
    assert out.returncode == 0, out.stdout + out.stderr
    cache = work / "feature-cache"
    assert f"tune: the frozen backbone's features are cached in {cache}, shared by every run" in out.stdout
    first, second = (p.read_text() for p in sorted((work / "tuning" / "tune").glob("trial-*/train.log")))
    assert "cache miss" in first and "cache hit" not in first
    assert "cache hit" in second and "cache miss" not in second  # the second trial ran no backbone
    assert sorted(p.name.split("-")[1] for p in cache.glob("*.pt")) == ["eval", "eval", "view0", "view1"]
    assert len(list((cache / "scans").glob("scan-*.json"))) == 3  # the header checks, cached too

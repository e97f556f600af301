"""The real `train` program, as a process, on generated data in a temporary /opt/ml."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch
from torchvision.models import resnet18

from dogbreed.contract import metrics
from dogbreed.serve.predictor import Predictor
from local_test.testdata import make_dataset, write_opt_ml
from tests.helpers import (
    FAST_HP,
    TRAIN,
    failure_reason,
    read_metadata,
    run_train,
    train_until,
    with_old_driver,
)

pytestmark = pytest.mark.e2e


def test_the_train_on_path_is_ours():
    out = subprocess.run([str(TRAIN), "--help"], capture_output=True, text=True, check=True)
    assert "fine-tune ResNet18" in out.stdout and "OPT_ML" in out.stdout


def test_full_run_writes_every_artefact(opt_ml, train_env):
    root = opt_ml()
    result = run_train(root, train_env)
    assert result.returncode == 0, result.stdout + result.stderr
    model_dir = root / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == ["classes.json", "metadata.json", "model.pt",
                                                           "model_int8.pt"]
    assert "int8 model: " in result.stdout + result.stderr
    classes = json.loads((model_dir / "classes.json").read_text())
    assert classes == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
    meta = read_metadata(root)
    assert meta["architecture"] == "resnet18" and meta["num_classes"] == 3
    assert meta["preprocessing"] == {"image_size": 48, "resize_size": 55, "mean": [0.485, 0.456, 0.406],
                                     "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"}
    assert meta["hyperparameters"]["epochs"] == 2 and meta["hyperparameters"]["pretrained"] is False
    assert set(meta["metrics"]) == {"selected_epoch", "valid_loss", "valid_acc", "test_loss", "test_acc"}
    assert len(meta["history"]) == 2 and meta["data"]["train"] == {"images": 24, "skipped": 0}
    # The weights load with weights_only=True into a plain ResNet18 and give valid outputs.
    state = torch.load(model_dir / "model.pt", weights_only=True)
    assert state["fc.weight"].shape == (3, 512) and all(v.device.type == "cpu" for v in state.values())
    model = resnet18(num_classes=3)  # torchvision's own: users need nothing of this project
    model.load_state_dict(state, strict=True)
    assert model.eval()(torch.zeros(1, 3, 48, 48)).shape == (1, 3)
    # A checkpoint of the last epoch is kept, and no failure is reported.
    assert [p.name for p in (root / "checkpoints").iterdir()] == ["epoch-0002.pt"]
    assert not (root / "output" / "failure").exists()


def test_metric_regexes_read_the_real_output(opt_ml, train_env):
    root = opt_ml({**FAST_HP, "epochs": "3"})
    result = run_train(root, train_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    epochs = [metrics.parse_epoch(line) for line in lines if metrics.parse_epoch(line)]
    assert [e for e, _ in epochs] == [1, 2, 3]
    names = {"train_loss", "train_acc", "valid_loss", "valid_acc", "epoch_seconds", "images_per_second"}
    for _, found in epochs:
        assert set(found) == names
    finals = [line for line in lines if metrics.is_final(line)]
    assert len(finals) == 1
    final = metrics.parse_metrics(finals[0])
    assert set(final) == {"valid_loss", "valid_acc", "test_loss", "test_acc"}
    # What SageMaker would record: every match of every regex, in order of the log.
    seen = {d["Name"]: [float(m) for m in re.findall(d["Regex"], result.stdout)]
            for d in metrics.METRIC_DEFINITIONS}
    meta = read_metadata(root)
    assert seen["valid_acc"][-1] == pytest.approx(meta["metrics"]["valid_acc"], abs=1e-4)
    assert seen["test_acc"] == [pytest.approx(meta["metrics"]["test_acc"], abs=1e-4)]
    assert len(seen["train_loss"]) == 3
    # The generated classes are easy: the run learns them.
    assert meta["metrics"]["valid_acc"] > 0.6


def test_learns_with_pretrained_weights_in_both_regimes(opt_ml, train_env, standin):
    for regime in ("full", "head"):
        root = opt_ml({**FAST_HP, "pretrained": "true", "finetune": regime})
        shutil.rmtree(root / "checkpoints", ignore_errors=True)
        shutil.rmtree(root / "model", ignore_errors=True)
        result = run_train(root, train_env)
        assert result.returncode == 0, result.stdout + result.stderr
        trained = torch.load(root / "model" / "model.pt", weights_only=True)
        start = torch.load(standin[0], weights_only=True)
        backbone_same = all(torch.equal(trained[k], start[k]) for k in start if not k.startswith("fc."))
        # Head only: the backbone (BatchNorm statistics included) is exactly the pretrained one.
        assert backbone_same == (regime == "head"), regime
        assert read_metadata(root)["pretrained"] == "imagenet"


def test_missing_pretrained_weights_fail_clearly(opt_ml, train_env, tmp_path):
    root = opt_ml({**FAST_HP, "pretrained": "true"})
    env = {**train_env, "DOGBREED_WEIGHTS": str(tmp_path / "nowhere.pth"),
           "TORCH_HOME": str(tmp_path / "empty-torch-home")}
    result = run_train(root, env)
    assert result.returncode == 1
    assert "ImageNet ResNet18 weights are not here" in failure_reason(root)
    assert not (root / "model" / "model.pt").exists()


def test_bad_hyperparameter_fails_naming_the_key(opt_ml, train_env):
    root = opt_ml({**FAST_HP, "batch_size": "big"})
    result = run_train(root, train_env)
    assert result.returncode == 1
    reason = failure_reason(root)
    assert reason == "hyperparameter 'batch_size': got 'big'; allowed: an integer from 1 to 4096"
    assert "Traceback" not in result.stdout + result.stderr  # a user error is no crash
    assert reason in result.stdout


def test_missing_channel_fails(opt_ml, train_env):
    root = opt_ml()
    (root / "input" / "data" / "valid").unlink()
    result = run_train(root, train_env)
    assert result.returncode == 1
    assert failure_reason(root).startswith("missing data channel 'valid'")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_empty_class_fails(opt_ml, train_env, tmp_path, processes):
    data = make_dataset(tmp_path / "d", classes=3, per_class=4, size=32)
    for f in (data / "train" / "002.Afghan_hound").iterdir():
        f.unlink()
    root = opt_ml({**FAST_HP, "processes_per_host": processes}, data=data)
    assert run_train(root, train_env).returncode == 1
    # Several workers: the launcher reports the worker's own reason, as a single process does.
    assert failure_reason(root) == "train: 1 class folder(s) without a usable image: 002.Afghan_hound"
    details = (root / "output" / "failure").read_text()
    assert "DataError: train: 1 class folder(s)" in details  # the (first failed) worker's traceback
    if processes == "2":
        assert "failed workers, first failure first:\n  rank " in details


def test_class_of_only_corrupt_images_fails(opt_ml, train_env, tmp_path):
    data = make_dataset(tmp_path / "d", classes=3, per_class=4, size=32)
    for f in (data / "valid" / "003.Airedale_terrier").iterdir():
        f.write_bytes(b"corrupt")
    root = opt_ml(data=data)
    assert run_train(root, train_env).returncode == 1
    assert failure_reason(root) == "valid: 1 class folder(s) without a usable image: 003.Airedale_terrier"


def test_mismatched_classes_fail(opt_ml, train_env, tmp_path):
    data = make_dataset(tmp_path / "d", classes=3, per_class=4, size=32)
    shutil.rmtree(data / "valid" / "001.Affenpinscher")
    root = opt_ml(data=data)
    assert run_train(root, train_env).returncode == 1
    assert failure_reason(root).startswith("'train' and 'valid' must have the same class folders")


def test_corrupt_images_are_skipped_and_reported(opt_ml, train_env, tmp_path):
    data = make_dataset(tmp_path / "d", classes=3, per_class=6, size=48)
    cls = data / "train" / "001.Affenpinscher"
    (cls / "garbage.jpg").write_bytes(b"\xff\xd8\xffnot really a jpeg")
    (cls / "readme.txt").write_text("hello")
    truncated = sorted(cls.glob("*.jpg"))[0]
    truncated.write_bytes(truncated.read_bytes()[: len(truncated.read_bytes()) * 2 // 3])
    root = opt_ml(data=data)
    result = run_train(root, train_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "train: skipped 2 unusable file(s)" in result.stdout
    assert "garbage.jpg" in result.stdout and "readme.txt" in result.stdout
    assert re.search(rf"could not be decoded: \S+/001.Affenpinscher/{truncated.name} \(image could not be "
                     r"decoded: image file is truncated", result.stdout)
    assert read_metadata(root)["data"]["train"] == {"images": 18, "skipped": 2}


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_result(tmp_path, train_env):
    data = make_dataset(tmp_path / "data", classes=3, per_class=20, size=64)
    hp = {**FAST_HP, "epochs": "3", "batch_size": "4", "image_size": "64", "progress_seconds": "0.001",
          "workers": "0"}
    reference = write_opt_ml(tmp_path / "reference", data, hp)
    assert run_train(reference, train_env).returncode == 0

    killed = write_opt_ml(tmp_path / "killed", data, hp)
    proc, _ = train_until(killed, train_env, "progress: epoch 2/3 batch 3/")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    # Killed in the middle of epoch 2: only epoch 1's checkpoint exists, and no model yet.
    assert [p.name for p in (killed / "checkpoints").iterdir() if p.suffix == ".pt"] == ["epoch-0001.pt"]
    assert not (killed / "model" / "model.pt").exists()

    started = time.monotonic()
    resumed = run_train(killed, train_env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from the checkpoint of epoch 1" in resumed.stdout
    assert [e for e, _ in filter(None, map(metrics.parse_epoch, resumed.stdout.splitlines()))] == [2, 3]
    assert time.monotonic() - started < 300
    a = torch.load(reference / "model" / "model.pt", weights_only=True)
    b = torch.load(killed / "model" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = read_metadata(reference), read_metadata(killed)
    assert ma["metrics"] == mb["metrics"]

    def results(history):  # every figure but the timings
        return [{k: v for k, v in h.items() if k not in ("epoch_seconds", "images_per_second")}
                for h in history]

    assert results(ma["history"]) == results(mb["history"])


def test_checkpoint_of_other_settings_is_not_resumed(opt_ml, train_env):
    root = opt_ml()
    assert run_train(root, train_env).returncode == 0
    hp = json.loads((root / "input/config/hyperparameters.json").read_text())
    (root / "input/config/hyperparameters.json").write_text(json.dumps({**hp, "lr": "0.01"}))
    result = run_train(root, train_env)
    assert result.returncode == 1
    assert "lr: 0.001 -> 0.01" in failure_reason(root) and "remove them" in failure_reason(root)


def test_early_stopping_keeps_the_best_epoch(opt_ml, train_env):
    # Frozen backbone and a negligible lr: epoch 2 cannot beat epoch 1, so patience 1 stops there.
    root = opt_ml({**FAST_HP, "epochs": "6", "patience": "1", "lr_schedule": "constant", "lr": "1e-8",
                   "pretrained": "true", "finetune": "head"})
    result = run_train(root, train_env)
    assert result.returncode == 0, result.stderr
    meta = read_metadata(root)
    assert meta["training"]["stopped_early"] is True
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    assert "early stopping: valid_acc has not improved for 1 epochs (best: epoch 1)" in result.stdout
    assert meta["metrics"]["selected_epoch"] == 1


@pytest.mark.slow
def test_two_processes_with_gloo(opt_ml, train_env):
    root = opt_ml({**FAST_HP, "processes_per_host": "2", "epochs": "2"})
    result = run_train(root, train_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "launched 2 worker(s) on algo-1 (world size 2" in result.stdout
    assert "2 process(es) in all" in result.stdout
    lines = [line for line in result.stdout.splitlines() if metrics.parse_epoch(line)]
    assert len(lines) == 2  # only rank 0 prints metrics
    meta = read_metadata(root)
    assert meta["training"]["processes"] == 2
    assert meta["data"]["train"]["images"] == 24
    # The photos are decoded once for both processes, into their launcher's temporary folder,
    # which the run removes.
    made = re.findall(r"train: 24 images decoded once in [\d.]+ s \([\d.]+ MB in (\S+)\)", result.stdout)
    assert len(made) == 1 and Path(made[0]).parent.name.startswith("dogbreed-decoded-")
    assert not Path(made[0]).parent.exists()


def test_a_failing_worker_fails_the_launcher(opt_ml, train_env, tmp_path):
    data = make_dataset(tmp_path / "d", classes=3, per_class=4, size=32)
    root = opt_ml({**FAST_HP, "processes_per_host": "2"}, data=data)
    shutil.rmtree(data / "valid" / "002.Afghan_hound")
    result = run_train(root, train_env)
    assert result.returncode == 1
    assert failure_reason(root).startswith("'train' and 'valid' must have the same class folders")


@pytest.mark.slow
def test_sigterm_reaches_every_worker(opt_ml, train_env):
    root = opt_ml({**FAST_HP, "processes_per_host": "2", "epochs": "100", "patience": "0"})
    proc, seen = train_until(root, train_env, "epoch=2/100")  # epoch 1 checkpointed by now
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)  # to the launcher alone, as `docker stop` sends it
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, "".join(seen) + rest
    assert len(workers) >= 2 and not any(w.is_running() for w in workers)
    for rank in (0, 1):  # each worker stopped by the SIGTERM the elastic agent passed on
        assert f"[rank {rank}] training failed: training stopped by SIGTERM" in rest, "".join(seen) + rest
    assert failure_reason(root).startswith("training stopped by SIGTERM")
    assert any(p.suffix == ".pt" for p in (root / "checkpoints").iterdir())


def test_sigterm_mid_epoch_writes_the_best_model_so_far(opt_ml, train_env):
    """SageMaker's StopTrainingJob, MaxRuntimeInSeconds and spot interruption: SIGTERM, then
    SIGKILL after 120 s. The best epoch so far becomes the model, loadable by serve."""
    root = opt_ml({**FAST_HP, "epochs": "50", "patience": "0", "progress_seconds": "0.001",
                   "workers": "0"})
    proc, seen = train_until(root, train_env, "progress: epoch 2/50 batch 2/")  # epoch 1: the best
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[0]
    took = time.monotonic() - sent
    assert proc.returncode == 143, "".join(seen) + rest
    assert took < 30, f"{took:.1f}s from SIGTERM to exit"
    meta = read_metadata(root)
    assert meta["metrics"]["selected_epoch"] == 1 and "test_acc" not in meta["metrics"]
    assert meta["training"]["stopped_by_sigterm"] is True
    assert Predictor(root / "model").num_classes == 3  # what serve loads
    reason = failure_reason(root)
    assert reason.startswith("training stopped by SIGTERM")
    assert "the best model so far (epoch 1, valid_acc " in reason
    assert [p.name for p in (root / "checkpoints").iterdir() if p.suffix == ".pt"] == ["epoch-0001.pt"]


def test_sigterm_before_the_first_epoch_ends_writes_no_model(opt_ml, train_env):
    root = opt_ml({**FAST_HP, "epochs": "50", "progress_seconds": "0.001", "workers": "0"})
    proc, _ = train_until(root, train_env, "progress: epoch 1/50 batch 2/")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert not (root / "model" / "metadata.json").exists()
    assert "no epoch had finished: no model written" in failure_reason(root)


@pytest.mark.slow
def test_two_hosts_with_one_process_each(tmp_path, dataset, train_env):
    """Two 'hosts' on this machine (one /opt/ml each), as SageMaker runs a 2-instance job."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**train_env, "DOGBREED_MASTER_ADDR": "127.0.0.1", "DOGBREED_MASTER_PORT": str(port)}
    roots, procs = [], []
    for host in ("algo-1", "algo-2"):
        root = write_opt_ml(tmp_path / host, dataset, FAST_HP, hosts=("algo-1", "algo-2"),
                            current_host=host)
        roots.append(root)
        procs.append(subprocess.Popen([str(TRAIN)], env={**env, "OPT_ML": str(root)},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "world size 2" in outputs[0] and "world size 2" in outputs[1]
    # Rank 0 (on the first host) alone prints metrics and writes the model and checkpoints.
    assert "epoch=2/2" in outputs[0] and "epoch=2/2" not in outputs[1]
    assert (roots[0] / "model" / "model.pt").is_file() and not (roots[1] / "model" / "model.pt").exists()
    assert not any((roots[1] / "checkpoints").iterdir())


@pytest.mark.slow
def test_evaluation_details_cover_every_image_once(opt_ml, train_env):
    for processes in ("1", "2"):
        root = opt_ml({**FAST_HP, "processes_per_host": processes})
        shutil.rmtree(root / "checkpoints", ignore_errors=True)
        result = run_train(root, train_env)
        assert result.returncode == 0, result.stdout + result.stderr
        details = json.loads((root / "output" / "data" / "evaluation.json").read_text())
        for split in ("valid", "test"):
            per_class = details[split]["per_class"]
            assert details[split]["images"] == 12 and sum(c["images"] for c in per_class) == 12
            assert [c["images"] for c in per_class] == [4, 4, 4]
        meta = read_metadata(root)
        assert details["test"]["accuracy"] == pytest.approx(meta["metrics"]["test_acc"])


def test_gpus_that_cuda_cannot_use_fail_the_run_unless_cpu_fallback_is_allowed(opt_ml, train_env, tmp_path):
    env = with_old_driver(train_env, tmp_path / "nvml")
    root = opt_ml({**FAST_HP, "epochs": "1"})
    failed = run_train(root, env)
    assert failed.returncode == 1
    reason = failure_reason(root)
    assert reason.startswith("1 NVIDIA GPU(s) (Tesla T4) with driver 470.256.02, but torch ")
    assert f"(CUDA {torch.version.cuda}) cannot use them" in reason
    assert reason.endswith("set allow_cpu_fallback=true to train on the CPU instead")
    allowed = run_train(opt_ml({**FAST_HP, "epochs": "1", "allow_cpu_fallback": "true"}), env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "training on the CPU (allow_cpu_fallback=true)" in allowed.stdout


USER_SCRIPT = Path(__file__).resolve().parents[2] / "local_test" / "user_script"
# The toolkit waits (up to 15 min) until every host name (algo-1) resolves, as on SageMaker;
# its own switch skips that outside a cluster.
NO_DNS_WAIT = {"SM_STUDIO_LOCAL_MODE": "true"}


def test_a_job_naming_its_own_script_runs_it_through_the_training_toolkit(opt_ml, train_env):
    # As the SDK writes it for Estimator(entry_point="train.py", source_dir=...): JSON-encoded.
    root = opt_ml({"sagemaker_program": '"train.py"', "sagemaker_submit_directory": f'"{USER_SCRIPT}"',
                   "epochs": "3"})
    result = run_train(root, {**train_env, **NO_DNS_WAIT}, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "handing over to the SageMaker training toolkit" in out
    assert "user-script: photos=24 accuracy=0.80" in out  # 3 classes x 8 photos, --epochs 3
    assert torch.load(root / "model" / "model.pt", weights_only=True)["weight"].shape == (2, 4)
    assert not (root / "output" / "failure").exists()


def test_a_failing_user_script_reports_through_the_failure_file(opt_ml, train_env, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "broken.py").write_text("raise SystemExit('user script: no data for me')\n")
    root = opt_ml({"sagemaker_program": '"broken.py"', "sagemaker_submit_directory": f'"{code}"'})
    result = run_train(root, {**train_env, **NO_DNS_WAIT}, timeout=120)
    assert result.returncode != 0
    # The toolkit's own report: the script, its exit code (its stderr is in the log).
    failure = (root / "output" / "failure").read_text()
    assert "ExecuteUserScriptError" in failure and "ExitCode 1" in failure and "broken.py" in failure
    assert "no data for me" in result.stderr
    assert not (root / "model" / "model.pt").exists()

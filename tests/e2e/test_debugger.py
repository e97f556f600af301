"""The debugger, the profiler, the rules and the report, on real `train` runs."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import resnet18

from dogbreed.contract.jobdir import JobDir
from dogbreed.debugger import report
from dogbreed.debugger.hook import GRADIENT_SAMPLE, REDUCTIONS, SAMPLE_SIZE
from dogbreed.debugger.verdicts import ISSUES, NO_ISSUES, NOT_ENOUGH, RULE_NAMES
from local_test.testdata import make_dataset, write_opt_ml
from tests.helpers import BIN, FAST_HP, Server, post, run_train

pytestmark = pytest.mark.e2e
SMALL = {**FAST_HP, "image_size": "32"}
DEBUG_FIRST_STEPS = 3


def debug_run(root: Path, data: Path, hp: dict[str, str], env: dict[str, str],
              full: bool = False) -> subprocess.CompletedProcess:
    """A `train` run with the debugger on (weights, gradients... at steps 0-2 only: quick;
    ``full``: whole tensors, as a ``--debugger managed`` job saves them)."""
    write_opt_ml(root, data, hp, debug_interval=1_000_000, debug_first_steps=DEBUG_FIRST_STEPS,
                 debug_full=full)
    return run_train(root, env)


def verdicts(root: Path, run: subprocess.CompletedProcess | None = None) -> dict[str, dict]:
    path = root / "output" / "data" / "rule-verdicts.json"
    assert path.is_file(), "no rule verdicts; the run said:\n" + (run.stdout + run.stderr if run else "")
    data = json.loads(path.read_text())
    return {r["rule"]: r for r in data}


def standin_with(path: Path, fill: float) -> dict[str, str]:
    """Weights 'pretrained' with every value ``fill``: an env that accepts them."""
    torch.save({k: torch.full_like(v, fill) if v.is_floating_point() else v
                for k, v in resnet18().state_dict().items()}, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"DOGBREED_WEIGHTS": str(path), "DOGBREED_WEIGHTS_SHA256": sha}


@pytest.fixture(scope="module")
def debug_job(tmp_path_factory, dataset):
    """One ordinary run with the debugger on, shared by the tests that only read it."""
    import os

    root = tmp_path_factory.mktemp("debugjob") / "opt_ml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOGBREED_", "OPT_ML"))}
    result = debug_run(root, dataset, {**SMALL, "epochs": "2"}, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, result


def test_tensors_are_saved_in_train_and_eval_modes(debug_job):
    from smdebug.core.modes import ModeKeys
    from smdebug.trials import create_trial

    root, result = debug_job
    assert "debugger on: saving tensors to" in result.stdout
    trial = create_trial(str(root / "output" / "tensors"))
    assert trial.tensor_names(collection="weights") and trial.tensor_names(collection="biases")
    grads = trial.tensor_names(collection="gradients")
    assert grads and trial.tensor(grads[0]).steps(mode=ModeKeys.TRAIN) == [0, 1, 2]
    (loss,) = trial.tensor_names(collection="losses")
    assert len(trial.tensor(loss).steps(mode=ModeKeys.TRAIN)) == 12  # 2 epochs x 6 steps
    assert len(trial.tensor(loss).steps(mode=ModeKeys.EVAL)) >= 6  # validation and test batches
    assert len(trial.tensor_names(collection="relu_input")) == 17
    (sample,) = trial.tensor_names(collection=GRADIENT_SAMPLE)
    assert trial.tensor(sample).steps(mode=ModeKeys.TRAIN) == [0, 1, 2]


def test_head_only_on_cached_features_saves_the_head_and_every_loss(tmp_path, dataset, train_env):
    """finetune=head trains on the frozen backbone's cached features: the hook sees the final
    layer, the one that runs and learns; losses, rules and report as in any run."""
    from smdebug.core.modes import ModeKeys
    from smdebug.trials import create_trial

    root = tmp_path / "opt_ml"
    hp = {**SMALL, "epochs": "2", "pretrained": "true", "finetune": "head"}
    result = debug_run(root, dataset, hp, train_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "only the final layer runs: its weights and gradients and the losses are saved" in result.stdout
    assert "features: train view 0: cache miss" in result.stdout
    trial = create_trial(str(root / "output" / "tensors"))
    assert trial.tensor_names(collection="weights") == ["Linear_weight"]
    assert trial.tensor_names(collection="gradients") == ["gradient/Linear_bias", "gradient/Linear_weight"]
    assert trial.tensor("gradient/Linear_weight").steps(mode=ModeKeys.TRAIN) == [0, 1, 2]
    (loss,) = trial.tensor_names(collection="losses")
    assert len(trial.tensor(loss).steps(mode=ModeKeys.TRAIN)) == 12  # 2 epochs x 6 steps
    assert len(trial.tensor(loss).steps(mode=ModeKeys.EVAL)) >= 6  # validation and test batches
    (sample,) = trial.tensor_names(collection=GRADIENT_SAMPLE)
    assert trial.tensor(sample).steps(mode=ModeKeys.TRAIN) == [0, 1, 2]
    found = verdicts(root, result)
    assert list(found) == list(RULE_NAMES)
    assert found["ExplodingTensor"]["verdict"] == NO_ISSUES
    assert found["VanishingGradient"]["verdict"] == NO_ISSUES
    assert (root / "output" / "data" / "report.html").is_file()


def test_the_tensors_stay_within_a_budget_set_by_the_configuration(debug_job):
    """Reductions, not tensors: a few scalars per tensor and save, the gradient sample at the
    first steps and one loss per step. Saved in full, ResNet18's weights and gradients alone
    would take 94 MB a save."""
    root, _ = debug_job
    tensors = root / "output" / "tensors"
    scalars = {c: len(r.split(",")) for c, r in REDUCTIONS.items()}
    assert scalars["weights"] == scalars["biases"]
    # A record per reduction of each weight or bias, gradient and ReLU input.
    records = len(list(resnet18().parameters())) * (scalars["weights"] + scalars["gradients"]) \
        + 17 * scalars["relu_input"]
    steps = len(list((tensors / "events").iterdir()))  # each step's loss has its own event file
    scalar, per_step = 512, 1024  # bytes: one record and its index entry; a step's two files
    budget = (DEBUG_FIRST_STEPS * (records * scalar + 4 * SAMPLE_SIZE)
              + steps * (scalar + per_step))
    size = sum(f.stat().st_size for f in tensors.rglob("*") if f.is_file())
    assert size < budget < 3_000_000, (size, budget)


def test_every_rule_gives_a_verdict_logged_and_saved(debug_job):
    root, result = debug_job
    found = verdicts(root)
    assert list(found) == list(RULE_NAMES)
    for name, r in found.items():
        assert r["verdict"] in (ISSUES, NO_ISSUES, NOT_ENOUGH)
        assert f"rule {name}: {r['verdict']}" in result.stdout
    assert found["VanishingGradient"]["verdict"] == NO_ISSUES
    assert found["ExplodingTensor"]["verdict"] == NO_ISSUES
    assert found["LowGPUUtilization"]["verdict"] == NOT_ENOUGH  # a CPU run
    assert "report written to" in result.stdout


def test_the_profile_is_written(debug_job):
    from smdebug.profiler.system_metrics_reader import LocalSystemMetricsReader

    root, _ = debug_job
    profiler = root / "output" / "profiler"
    steps = [json.loads(x) for x in (profiler / "framework" / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 12 and all(s["forward_backward_s"] > 0 for s in steps)
    events = LocalSystemMetricsReader(str(profiler)).get_events(0, 2**62)
    assert any(e.dimension == "CPUUtilization" for e in events)


def png_sizes(html: str) -> list[tuple[int, int]]:
    sizes = []
    for _kind, data in re.findall(r'src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)"', html):
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.verify()
        sizes.append(img.size)
    return sizes


def test_the_report_has_every_section_and_valid_images(debug_job, tmp_path):
    root, _ = debug_job
    html = (root / "output" / "data" / "report.html").read_text()
    for heading in ("Debugger rules", "Training curves", "Hyperparameters", "Where the time went",
                    "Per-breed accuracy", "Accuracy of every breed", "Most confused pairs"):
        assert heading in html, heading
    for rule in RULE_NAMES:
        assert rule in html
    assert len(png_sizes(html)) >= 4  # curves, time split, utilisation, per-breed
    assert "http://" not in html.replace("http://www.w3.org", "")  # self-contained
    # A tuning job's trials get their own section.
    out = tmp_path / "report.html"
    tuning = {"objective": "valid_acc", "trials": [
        {"name": f"t{i}", "status": "Completed", "objective": 0.1 * i,
         "hyperparameters": {"lr": str(10 ** -i), "batch_size": "32", "note": "<script>alert(1)</script>"}}
        for i in range(1, 5)]}
    (root / "output" / "data" / "tuning.json").write_text(json.dumps(tuning))
    try:
        done = subprocess.run([str(BIN / "dogbreed"), "report", str(root), "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
    finally:
        (root / "output" / "data" / "tuning.json").unlink()
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "Hyperparameter tuning: 4 trials" in html and html.index(">t4<") < html.index(">t1<")
    assert "<script>" not in html and html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 4  # text


def test_report_of_a_folder_that_is_no_job(tmp_path):
    done = subprocess.run([str(BIN / "dogbreed"), "report", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "is not a finished training job" in done.stderr


def test_a_model_trained_with_the_debugger_is_served_as_is(debug_job, sample_photos, tmp_path):
    root, _ = debug_job
    server = Server(root / "model", log=tmp_path / "serve.log")
    try:
        server.wait_ready()
        status, body = post(server.url + "/invocations", sample_photos[0].read_bytes())
        assert status == 200 and len(body["predictions"][0]) == 3
        with urllib.request.urlopen(server.url + "/ping") as resp:
            assert resp.status == 200
    finally:
        server.stop()


def test_no_config_means_no_hook(opt_ml, train_env):
    root = opt_ml()
    result = run_train(root, train_env)
    assert result.returncode == 0
    assert "debugger on" not in result.stdout and "debugger: in this job" not in result.stdout
    assert not (root / "output" / "tensors").exists()
    assert not (root / "output" / "data" / "rule-verdicts.json").exists()


def test_the_debugger_hyperparameter_runs_the_analysis_in_the_job(opt_ml, train_env, tmp_path):
    """What `dogctl train --sagemaker` asks for by default: no DebugHookConfig (SageMaker Debugger
    is closed to new accounts), the hook, rules and report in the job; what leaves the job (the
    model and output/data) holds the verdicts, the report and the per-step losses."""
    root = opt_ml({**SMALL, "debugger": "true", "debug_interval": "4"})
    assert not (root / "input" / "config" / "debughookconfig.json").exists()
    result = run_train(root, train_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "debugger: in this job (debugger=true): tensor reductions at steps 0-9 and every 4 steps" \
        in result.stdout
    assert any((root / "output" / "tensors").rglob("*.tfevents"))  # SageMaker does not upload these
    data = root / "output" / "data"
    assert {r["rule"] for r in json.loads((data / "rule-verdicts.json").read_text())} == set(RULE_NAMES)
    assert (data / "report.html").is_file()
    # A downloaded SageMaker job: model.tar.gz and output.tar.gz, no tensors. Its report still
    # has the per-step loss curve, from the bounded summary.
    job = tmp_path / "downloaded"
    shutil.copytree(root / "model", job / "model")
    shutil.copytree(data, job / "output" / "data")
    losses = report.step_losses(JobDir.find(job))
    assert losses == report.step_losses(JobDir.find(root)) and len(losses) == 12  # 2 epochs of 6 steps
    assert report.write_report(job).is_file()


def test_a_broken_debugger_never_costs_the_run(opt_ml, train_env):
    root = opt_ml()
    (root / "input" / "config" / "debughookconfig.json").write_text(json.dumps(
        {"LocalPath": str(root / "output" / "tensors"),
         "CollectionConfigurations": [{"CollectionName": "relu_input"}]}))  # no regex: smdebug refuses
    result = run_train(root, train_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("debugger disabled") == 1
    assert (root / "model" / "model.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("full", [False, True], ids=["reductions", "whole-tensors"])
def test_poor_initialisation_and_vanishing_gradients_fire_on_zero_weights(tmp_path, full):
    import os

    data = make_dataset(tmp_path / "d", classes=3, per_class=8, size=32)
    env = {**os.environ, **standin_with(tmp_path / "zero.pth", 0.0)}
    root = tmp_path / "opt_ml"
    run = debug_run(root, data, {**SMALL, "pretrained": "true"}, env, full=full)
    assert run.returncode == 0, run.stdout + run.stderr
    found = verdicts(root, run)
    assert found["PoorWeightInitialization"]["verdict"] == ISSUES
    assert found["VanishingGradient"]["verdict"] == ISSUES
    assert "zero variance" in found["PoorWeightInitialization"]["summary"]


@pytest.mark.slow
def test_exploding_tensor_fires_on_infinite_weights(tmp_path):
    import os

    data = make_dataset(tmp_path / "d", classes=3, per_class=8, size=32)
    env = {**os.environ, **standin_with(tmp_path / "inf.pth", float("inf"))}
    root = tmp_path / "opt_ml"
    run = debug_run(root, data, {**SMALL, "pretrained": "true", "epochs": "1"}, env)
    assert run.returncode == 0, run.stdout + run.stderr
    found = verdicts(root, run)
    assert found["ExplodingTensor"]["verdict"] == ISSUES
    assert "non-finite" in found["ExplodingTensor"]["summary"]


@pytest.mark.slow
def test_an_absurd_learning_rate_is_caught(tmp_path, train_env):
    data = make_dataset(tmp_path / "d", classes=3, per_class=12, size=32)
    root = tmp_path / "opt_ml"
    # Batches of 2 give 60 steps, 6 windows of LossNotDecreasing: caught on 1 core or 2, seeds 0-3.
    hp = {**SMALL, "epochs": "6", "batch_size": "2", "lr": "1.0", "lr_schedule": "constant", "patience": "0"}
    run = debug_run(root, data, hp, train_env)
    assert run.returncode == 0, run.stdout + run.stderr
    found = verdicts(root, run)
    assert ISSUES in (found["LossNotDecreasing"]["verdict"], found["ExplodingTensor"]["verdict"])


@pytest.mark.slow
def test_overfit_fires_when_valid_loss_rises(tmp_path, train_env):
    data = make_dataset(tmp_path / "d", classes=3, per_class=8, size=32, noise=True)
    root = tmp_path / "opt_ml"
    hp = {**SMALL, "epochs": "6", "augment": "false", "label_smoothing": "0", "patience": "0"}
    run = debug_run(root, data, hp, train_env)
    assert run.returncode == 0, run.stdout + run.stderr
    found = verdicts(root, run)
    assert found["Overfit"]["verdict"] == ISSUES
    assert "above the training loss" in found["Overfit"]["summary"]
    # Random labels leave confusions: the report shows them with example thumbnails.
    html = (root / "output" / "data" / "report.html").read_text()
    assert "Most confused pairs" in html and html.count('class="thumb"') >= 2
    assert (84, 84) not in png_sizes(html) and any(s == (32, 32) for s in png_sizes(html))

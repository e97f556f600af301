"""Profiler output in SageMaker's format, the rules that read it, and the report that shows them."""

import json
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from dogbreed.contract.artifact import ModelArtifact, ModelMetadata, Preprocessing
from dogbreed.contract.hyperparameters import DEFAULTS
from dogbreed.debugger import rules, system_rules
from dogbreed.debugger.hook import (
    GRADIENT_SAMPLE,
    REDUCTIONS,
    SAMPLE_SIZE,
    DebugHook,
    GradientSample,
    collections,
    hook_config,
)
from dogbreed.debugger.profiler import STEPS_FILE, ProfilerSettings, StepTimer, SystemMonitor
from dogbreed.debugger.report import TUNING_FILE, write_report
from dogbreed.debugger.verdicts import ISSUES, NO_ISSUES, NOT_ENOUGH, Finding, RuleResult, save_verdicts
from dogbreed.train import evaluation


def test_profiler_settings(tmp_path):
    config = tmp_path / "profilerconfig.json"
    default = tmp_path / "out"
    assert ProfilerSettings.resolve(config, default, 500) == ProfilerSettings(True, default, 0.5)
    assert ProfilerSettings.resolve(config, default, 0).enabled is False
    # SageMaker's file wins: step timings in its LocalPath, no monitor (the platform samples).
    config.write_text(json.dumps({"ProfilingParameters": {"LocalPath": str(tmp_path / "sm")}}))
    assert ProfilerSettings.resolve(config, default, 500) == ProfilerSettings(True, tmp_path / "sm", 0)
    config.write_text(json.dumps({"DisableProfiler": True}))
    assert ProfilerSettings.resolve(config, default, 500).enabled is False
    config.write_text("{broken")
    assert ProfilerSettings.resolve(config, default, 500).enabled is False


def test_system_monitor_writes_what_smdebugs_reader_reads(tmp_path):
    from smdebug.profiler.system_metrics_reader import LocalSystemMetricsReader

    monitor = SystemMonitor(tmp_path, 0.05, "algo-1")
    monitor.start()
    time.sleep(0.4)
    monitor.stop()
    files = list((tmp_path / "system" / "incremental").rglob("*.algo-1.json"))
    assert len(files) == 1
    events = LocalSystemMetricsReader(str(tmp_path)).get_events(0, 2**62)
    dims = {e.dimension for e in events}
    assert {"CPUUtilization", "MemoryUsedPercent"} <= dims
    assert all(e.node_id == "algo-1" and 0 <= e.value <= 100 for e in events)


def test_step_timer(tmp_path):
    timer = StepTimer(tmp_path, cuda=False)
    for step in range(3):
        timer.begin(step)
        timer.mark("data")
        timer.mark("backward")
        timer.mark("optimizer")
        timer.end(1, step)
    timer.flush()
    lines = [json.loads(x) for x in (tmp_path / STEPS_FILE).read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 1, 2]
    assert all({"data_s", "forward_backward_s", "optimizer_s"} <= r.keys() for r in lines)
    off = StepTimer(None, cuda=False)
    off.begin(0)
    off.end(1, 0)
    off.flush()
    assert not off.enabled


def test_hook_config_saves_big_tensors_in_training_only():
    config = hook_config(Path("/x"), interval=50, first_steps=3)
    by_name = {c["CollectionName"]: c["CollectionParameters"] for c in config["CollectionConfigurations"]}
    assert set(by_name) == {"weights", "biases", "gradients", "relu_input", GRADIENT_SAMPLE, "losses"}
    assert by_name["gradients"]["train.save_steps"] == "0,1,2"
    assert by_name["gradients"]["train.save_interval"] == "50"
    assert by_name["weights"]["eval.start_step"] == "1"
    assert by_name["losses"] == {"save_interval": "1"}
    assert collections(100)["relu_input"]["include_regex"] == ".*relu_input"
    # Big tensors as reductions only (smdebug's save_raw_tensor defaults to false), the sample as is.
    for name in ("weights", "biases", "gradients", "relu_input"):
        assert by_name[name]["reductions"] == REDUCTIONS[name] and "save_raw_tensor" not in by_name[name]
    assert "reductions" not in by_name[GRADIENT_SAMPLE]
    assert by_name[GRADIENT_SAMPLE]["train.save_steps"] == by_name["relu_input"]["train.save_steps"]


def test_the_gradient_sample_is_fixed_and_uniform():
    params = [torch.zeros(1000, requires_grad=True), torch.zeros(3, 3, requires_grad=True),
              torch.zeros(9000, requires_grad=True)]
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, float(i))
    sample = GradientSample(params, size=4000).values()
    again = GradientSample(params, size=4000).values()
    assert sample.shape == (4000,) and torch.equal(sample, again)
    # Each tensor's share of the sample is its share of all the values (1000, 9 and 9000 of 10009).
    shares = np.bincount(sample.int().numpy(), minlength=3) / 4000
    assert np.allclose(shares, [1000 / 10009, 9 / 10009, 9000 / 10009], atol=0.02)
    params[1].grad = None  # a parameter without a gradient is left out
    assert (GradientSample(params, size=4000).values() != 1).all()


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


def hooked_steps(folder: Path, steps: int, first_steps: int, poison_at: int | None = None) -> Path:
    """``steps`` training steps of a tiny model under the job's hook configuration; at step
    ``poison_at``, one weight becomes NaN before the step."""

    tensors = folder / "tensors"
    config = folder / "debughookconfig.json"
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(hook_config(tensors, interval=4, first_steps=first_steps)))
    torch.manual_seed(0)
    model, loss_fn = TinyNet(), torch.nn.CrossEntropyLoss()
    hook = DebugHook.from_config(config)
    hook.register(model, loss_fn)
    hook.train_mode()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(steps):
        if step == poison_at:
            with torch.no_grad():
                model.fc.weight[0, 0] = float("nan")
        loss = loss_fn(model(torch.randn(5, 3, 8, 8)), torch.tensor([0, 1, 0, 1, 1]))
        opt.zero_grad()
        loss.backward()
        hook.save_gradient_sample()
        opt.step()
    assert hook.active
    hook.close()
    return tensors


def test_the_hook_saves_reductions_and_the_gradient_sample(tmp_path):
    from smdebug.core.modes import ModeKeys
    from smdebug.exceptions import TensorUnavailableForStep
    from smdebug.trials import create_trial

    trial = create_trial(str(hooked_steps(tmp_path, steps=10, first_steps=3)))
    (grad,) = [n for n in trial.tensor_names(collection="gradients") if n.endswith("fc.weight")]
    tensor = trial.tensor(grad)
    assert tensor.steps(mode=ModeKeys.TRAIN) == [0, 1, 2, 4, 8]  # steps 0-2, then every 4
    with pytest.raises(TensorUnavailableForStep):
        tensor.value(0)  # not saved in full
    assert set(tensor.reduction_values(0)) == {("min", False), ("max", False), ("mean", True)}
    assert len(trial.tensor_names(collection="relu_input")) == 1
    (sample,) = trial.tensor_names(collection=GRADIENT_SAMPLE)
    assert trial.tensor(sample).steps() == [0, 1, 2]
    # Drawn with replacement: the sample is SAMPLE_SIZE values even from a tiny model.
    values = trial.tensor(sample).value(0)
    assert values.shape == (SAMPLE_SIZE,) and np.isfinite(values).all()


def test_tensor_rules_read_reductions(tmp_path):
    """VanishingGradient, ExplodingTensor and PoorWeightInitialization on a job saved as reductions;
    a NaN weight at step 2 is caught through its saved minimum and maximum."""
    clean = rules_of(hooked_steps(tmp_path / "clean", steps=10, first_steps=3))
    assert clean["VanishingGradient"].verdict == NO_ISSUES
    assert clean["ExplodingTensor"].verdict == NO_ISSUES
    assert clean["PoorWeightInitialization"].verdict != NOT_ENOUGH  # relu variances and the sample
    poisoned = rules_of(hooked_steps(tmp_path / "nan", steps=4, first_steps=3, poison_at=2))
    result = poisoned["ExplodingTensor"]
    assert result.verdict == ISSUES and "non-finite" in result.summary
    assert {f.step for f in result.evidence} >= {2} and any("fc.weight" in f.tensor for f in result.evidence)


def rules_of(tensors: Path) -> dict[str, RuleResult]:
    return {name: rules._tensor_rule(name, cls, tensors) for name, cls in rules.RULES.items()}


def write_gpu_metrics(folder: Path, values: list[float], start: float = 1_700_000_000.0) -> None:
    """System metrics as SageMaker's monitor writes them (one file per minute)."""
    for i, v in enumerate(values):
        ts = start + i * 0.5
        minute = int(start) + 60 * (i // 120)
        path = folder / "system" / "incremental" / "2023111422" / f"{minute}.algo-1.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps({"Type": "gpu", "Name": "gpu0", "Dimension": "GPUUtilization",
                                 "Value": v, "NodeId": "algo-1", "Timestamp": ts}) + "\n")


def test_low_gpu_utilization_defaults_come_from_smdebug_rulesconfig():
    assert system_rules.low_gpu_defaults() == {"threshold_p95": 70, "threshold_p5": 10, "window": 500,
                                        "patience": 1000, "scan_interval_us": 60_000_000}


@pytest.mark.parametrize("values,verdict,fragment", [
    ([20.0] * 1600, ISSUES, "(underused)"),
    ([95.0, 2.0] * 800, ISSUES, "(fluctuating)"),
    ([90.0] * 1600, NO_ISSUES, "window(s) of utilisation checked"),
    ([20.0] * 1200, NOT_ENOUGH, "needs more than 1000 + 500"),
])
def test_low_gpu_utilization(tmp_path, values, verdict, fragment):
    write_gpu_metrics(tmp_path, values)
    result = system_rules.low_gpu_utilization(tmp_path)
    assert result.verdict == verdict and fragment in result.summary


def test_low_gpu_utilization_without_gpu(tmp_path):
    result = system_rules.low_gpu_utilization(tmp_path)
    assert result.verdict == NOT_ENOUGH and "CPU run" in result.summary


class _Page(HTMLParser):
    """The text and the tags of an HTML page, as a browser would parse them."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_report_shows_markup_from_the_job_as_text(tmp_path):
    """Class folder names, hyperparameters, verdicts and tuning trials are escaped, never markup."""
    breed = "<img src=x onerror=alert(1)>"  # a folder name can hold this (no slash)
    script = "<script>alert('x')</script>"
    job = tmp_path / "job <i>1"
    history = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.1, "train_acc": 0.5, "valid_acc": 0.4,
                "images_per_second": 10.0}]
    classes = ["001.Beagle", f"002.{breed}"]
    metadata = ModelMetadata(
        architecture="resnet18", num_classes=2, preprocessing=Preprocessing.for_size(32),
        hyperparameters={**DEFAULTS, "lr_schedule": script},
        metrics={"selected_epoch": 1, "valid_acc": 0.4, "test_acc": 0.5}, history=history,
        data={"train": {"images": 8, "skipped": 0}},
        training={"seconds": 6.0, "processes": 1, "device": script, "finished_at": "today"})
    ModelArtifact(job / "model", metadata, classes).write(b"")
    out = job / "output" / "data"
    predictions = [("a.jpg", 0, 1), ("b.jpg", 1, 0), ("c.jpg", 1, 1)]
    evaluation.write(out, {"test": evaluation.summarize(classes, predictions)})
    save_verdicts(out, [RuleResult("Overfit", ISSUES, script, [Finding(script, 3, "EVAL", script, 1.0)],
                                   {"patience": script}, advice=script)])
    (out / TUNING_FILE).write_text(json.dumps({"objective": "valid_acc", "trials": [
        {"name": script, "status": "Completed", "objective": 0.5,
         "hyperparameters": {"lr_schedule": script}}]}))

    html = write_report(job).read_text()
    page = _Page(html)
    text = "".join(page.text)
    assert breed not in html and script not in html
    assert text.count(breed) == 3  # the per-breed table and both sides of the confused pairs
    # device, hyperparameter, verdict (summary twice, evidence, tensor, advice, parameter), trial (x2)
    assert text.count(script) == 10
    assert text.count("job <i>1") == 3  # title, heading, folder
    assert {tag for tag, _ in page.tags} >= {"img", "table"} and "script" not in {t for t, _ in page.tags}
    assert all(a["src"].startswith("data:image/png;base64,") for t, a in page.tags if t == "img")

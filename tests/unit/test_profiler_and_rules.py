"""Profiler output in SageMaker's format, and the rules that read it."""

import json
import time
from pathlib import Path

import pytest

from dogbreed import rules
from dogbreed.debugger import collections, hook_config
from dogbreed.profiler import STEPS_FILE, ProfilerSettings, StepTimer, SystemMonitor
from dogbreed.verdicts import ISSUES, NO_ISSUES, NOT_ENOUGH


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
    assert set(by_name) == {"weights", "biases", "gradients", "relu_input", "losses"}
    assert by_name["gradients"]["train.save_steps"] == "0,1,2"
    assert by_name["gradients"]["train.save_interval"] == "50"
    assert by_name["weights"]["eval.start_step"] == "1"
    assert by_name["losses"] == {"save_interval": "1"}
    assert collections(100)["relu_input"]["include_regex"] == ".*relu_input"


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
    assert rules.low_gpu_defaults() == {"threshold_p95": 70, "threshold_p5": 10, "window": 500,
                                        "patience": 1000, "scan_interval_us": 60_000_000}


@pytest.mark.parametrize("values,verdict,fragment", [
    ([20.0] * 1600, ISSUES, "(underused)"),
    ([95.0, 2.0] * 800, ISSUES, "(fluctuating)"),
    ([90.0] * 1600, NO_ISSUES, "window(s) of utilisation checked"),
    ([20.0] * 1200, NOT_ENOUGH, "needs more than 1000 + 500"),
])
def test_low_gpu_utilization(tmp_path, values, verdict, fragment):
    write_gpu_metrics(tmp_path, values)
    result = rules.low_gpu_utilization(tmp_path)
    assert result.verdict == verdict and fragment in result.summary


def test_low_gpu_utilization_without_gpu(tmp_path):
    result = rules.low_gpu_utilization(tmp_path)
    assert result.verdict == NOT_ENOUGH and "CPU run" in result.summary

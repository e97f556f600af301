"""SageMaker Debugger's built-in rules on the system profile: LowGPUUtilization, with the defaults of
smdebug_rulesconfig's own class, read from the job's system metrics by smdebug's reader; and what
every rule's verdict shares (evidence count, documentation links, sliding windows).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from smdebug.profiler.system_metrics_reader import LocalSystemMetricsReader
from smdebug_rulesconfig.profiler_rules.rules import LowGPUUtilization

from dogbreed.debugger.verdicts import ISSUES, NO_ISSUES, NOT_ENOUGH, Finding, RuleResult

MAX_EVIDENCE = 8
DOCS = "https://docs.aws.amazon.com/sagemaker/latest/dg/"
T = TypeVar("T")


def sliding_windows(values: Sequence[T], size: int) -> list[Sequence[T]]:
    """Consecutive, non-overlapping windows of ``size`` values (a shorter tail is dropped)."""
    return [values[i:i + size] for i in range(0, len(values) - size + 1, size)]



# -- LowGPUUtilization: from the system profile -----------------------------------
LOW_GPU_DOC = "debugger-built-in-profiler-rules.html"
LOW_GPU_CHECKS = ("GPU utilisation in the system profile, per GPU over sliding windows of `window` "
                  "samples: 95th percentile below `threshold_p95`% (underused) or 5th percentile "
                  "below `threshold_p5`% (fluctuating), after `patience` samples")
LOW_GPU_ADVICE = ("The GPU waits: if the profile's step time is mostly data wait, raise workers (or "
                  "pick an instance with more CPUs per GPU); otherwise raise batch_size. Utilisation "
                  "swinging between busy and idle points at input stalls.")


def low_gpu_defaults() -> dict[str, Any]:
    """SageMaker's defaults, read from smdebug_rulesconfig's own LowGPUUtilization class."""
    sig = inspect.signature(LowGPUUtilization.__init__)
    return {k: p.default for k, p in sig.parameters.items() if k != "self"}


def gpu_series(profiler_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """GPUUtilization per (node, GPU) as (timestamp, percent), read with smdebug's own reader."""
    if not (profiler_dir / "system").is_dir():
        return {}
    reader = LocalSystemMetricsReader(str(profiler_dir))  # it looks under system/ itself
    series: dict[str, list[tuple[float, float]]] = {}
    for e in reader.get_events(0, 2**62):
        if e.dimension == "GPUUtilization":
            series.setdefault(f"{e.node_id}/{e.name}", []).append((e.timestamp, float(e.value)))
    return {k: sorted(v) for k, v in series.items()}


def _gpu_window(gpu: str, window: Sequence[float], p: dict[str, Any]) -> Finding | None:
    """The finding of one window of a GPU's utilisation, None when it is busy enough."""
    p5, p95 = np.percentile(window, [5, 95])
    if p95 < p["threshold_p95"]:
        return Finding(f"{gpu}: 95th percentile of utilisation {p95:.0f}% < {p['threshold_p95']}% "
                       "(underused)", None, None, gpu, float(p95))
    if p5 < p["threshold_p5"]:
        return Finding(f"{gpu}: utilisation swings from {p5:.0f}% (5th percentile) to {p95:.0f}% "
                       "(fluctuating)", None, None, gpu, float(p5))
    return None


def low_gpu_utilization(profiler_dir: Path | None, **params: Any) -> RuleResult:
    """SageMaker's LowGPUUtilization on the job's system profile."""
    p = {**low_gpu_defaults(), **params}
    p.pop("scan_interval_us", None)
    result = RuleResult("LowGPUUtilization", NOT_ENOUGH, "", [], p, LOW_GPU_ADVICE, DOCS + LOW_GPU_DOC)
    series = gpu_series(profiler_dir) if profiler_dir else {}
    if not series:
        result.summary = "no GPU utilisation in the system profile (a CPU run, or profiling off)"
        return result
    windows = [(gpu, w) for gpu, points in series.items()
               for w in sliding_windows([v for _, v in points][p["patience"]:], p["window"])]
    findings = [f for gpu, w in windows if (f := _gpu_window(gpu, w, p))]
    if not windows:
        longest = max(len(v) for v in series.values())
        result.summary = (f"{longest} samples per GPU; the rule needs more than {p['patience']} + "
                          f"{p['window']}")
    elif findings:
        result.verdict, result.summary, result.evidence = ISSUES, findings[0].what, findings[:MAX_EVIDENCE]
    else:
        result.verdict, result.summary = NO_ISSUES, f"{len(windows)} window(s) of utilisation checked"
    return result

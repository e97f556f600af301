"""The job report: one self-contained HTML file (PNG plots inside) from a job's folder.

    dogbreed report JOB_DIR [--out report.html] [--rules]

Sections: results at a glance, rule verdicts, training curves, hyperparameters,
each rule's evidence and advice, where the time went (profile), per-breed
accuracy, the most confused breed pairs with example thumbnails and, when the
folder holds a tuning job's trials (tuning.json), every trial. The page is
rendered from templates/report.html.j2; this module gives it data and PNG data-URLs.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogbreed.contract.hyperparameters import DEFAULTS, Hyperparameters, format_value
from dogbreed.contract.jobdir import (
    EVALUATION_FILE,
    EXAMPLES_DIR,
    REPORT_FILE,
    STEP_LOSSES_FILE,
    TUNING_FILE,
    JobDir,
    JobDirError,
)
from dogbreed.debugger.verdicts import ISSUES, NO_ISSUES, RuleResult, load_verdicts
from dogbreed.files import inside

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "report.html.j2"  # in dogbreed/debugger/templates
MAX_STEP_LOSSES = 5000
BLUE, ORANGE, GREEN, GREY, RED = "#2563eb", "#ea580c", "#16a34a", "#9ca3af", "#dc2626"


# -- plots ------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110})
    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def curves_plot(history: list[dict[str, float]], selected: int,
                step_losses: list[tuple[int, float]] | None) -> str:
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    if step_losses and len(history):
        steps_per_epoch = max(1, len(step_losses) / len(history))
        ax1.plot([s / steps_per_epoch for s, _ in step_losses], [v for _, v in step_losses],
                 color=BLUE, alpha=0.18, lw=0.8, label="train (each step)")
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color=BLUE, label="train")
    ax1.plot(epochs, [h["valid_loss"] for h in history], "o-", color=ORANGE, label="valid")
    ax1.set(title="Loss", xlabel="epoch")
    ax2.plot(epochs, [100 * h["train_acc"] for h in history], "o-", color=BLUE, label="train")
    ax2.plot(epochs, [100 * h["valid_acc"] for h in history], "o-", color=ORANGE, label="valid")
    ax2.set(title="Accuracy (%)", xlabel="epoch")
    for ax in (ax1, ax2):
        ax.axvline(selected, color=GREEN, ls="--", lw=1, label=f"kept: epoch {selected}")
    ax2.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    if step_losses and max(v for _, v in step_losses) > 20 * min(v for _, v in step_losses) > 0:
        ax1.set_yscale("log")
    return _png(fig)


def time_split_plot(split: dict[str, float]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 1.4))
    left = 0.0
    colors = {"waiting for data": ORANGE, "forward + backward": BLUE, "optimizer": GREEN}
    for label, ms in split.items():
        ax.barh([0], [ms], left=left, color=colors[label], label=f"{label}: {ms:.1f} ms")
        left += ms
    ax.set(yticks=[], xlabel="ms per training step (median)")
    ax.legend(frameon=False, ncol=3, loc="upper center", bbox_to_anchor=(0.5, 1.6))
    return _png(fig)


def utilisation_plot(series: dict[str, list[tuple[float, float]]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    start = min(t for points in series.values() for t, _ in points)
    palette = [BLUE, ORANGE, GREEN, RED, "#7c3aed", "#0891b2"]
    for (label, points), color in zip(sorted(series.items()), palette * 10, strict=False):
        ax.plot([t - start for t, _ in points], [v for _, v in points], lw=1, color=color, label=label)
    ax.set(ylim=(0, 105), xlabel="seconds since the start", ylabel="%",
           title="Utilisation over the run")
    ax.legend(frameon=False, ncol=4, fontsize=8)
    return _png(fig)


def per_breed_plot(per_class: list[dict[str, Any]], worst: int = 15) -> str:
    plt = _plt()
    rows = sorted((c for c in per_class if c["images"]), key=lambda c: (c["accuracy"], c["breed"]))[:worst]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(rows) + 0.8))
    ax.barh([c["breed"] for c in rows][::-1], [100 * c["accuracy"] for c in rows][::-1], color=ORANGE)
    ax.set(xlim=(0, 100), xlabel="accuracy (%)", title=f"The {len(rows)} hardest breeds")
    return _png(fig)


def tuning_plot(trials: list[dict[str, Any]], objective: str) -> str:
    plt = _plt()
    done = [t for t in trials if t.get("objective") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    axes[0].plot(range(1, len(done) + 1), [t["objective"] for t in done], "o", color=BLUE)
    best = []
    for t in done:
        best.append(max([t["objective"]] + best[-1:]))
    axes[0].plot(range(1, len(done) + 1), best, "-", color=GREEN, label="best so far")
    axes[0].set(title=f"{objective} per trial", xlabel="trial")
    axes[0].legend(frameon=False)
    lrs = [float(t["hyperparameters"].get("lr", "nan")) for t in done]
    axes[1].scatter(lrs, [t["objective"] for t in done], color=ORANGE)
    axes[1].set(xscale="log", title=f"{objective} against lr", xlabel="lr")
    return _png(fig)


# -- data from the job folder -----------------------------------------------------
def step_losses(job: JobDir) -> list[tuple[int, float]] | None:
    """Training loss of every saved step: the job's summary file when it has one (written at the
    end of `train`, and all a SageMaker job brings back: its tensors stay behind), else read from
    the debugger's tensors."""
    saved = job.read_json(STEP_LOSSES_FILE)
    if saved:
        return [(int(s), float(v)) for s, v in saved]
    return tensor_losses(job)


def tensor_losses(job: JobDir) -> list[tuple[int, float]] | None:
    """Training loss of every saved step, read from the debugger's tensors (None without them)."""
    if job.tensors is None or not any(job.tensors.rglob("*.tfevents")):
        return None
    from smdebug.core.modes import ModeKeys
    from smdebug.trials import create_trial

    trial = create_trial(str(job.tensors), name="report")
    names = trial.tensor_names(collection="losses")
    if not names:
        return None
    tensor = trial.tensor(names[0])
    return [(s, float(tensor.value(s, mode=ModeKeys.TRAIN))) for s in tensor.steps(mode=ModeKeys.TRAIN)]


def save_step_losses(job: JobDir, limit: int = MAX_STEP_LOSSES) -> None:
    """The per-step training loss to output/data (at most ``limit`` points, evenly spaced), so
    the report's curve survives without the tensors (which SageMaker may not upload)."""
    losses = tensor_losses(job)
    if not losses:
        return
    stride = max(1, -(-len(losses) // limit))
    job.output_data.mkdir(parents=True, exist_ok=True)
    (job.output_data / STEP_LOSSES_FILE).write_text(json.dumps(losses[::stride]))


def step_time_split(job: JobDir) -> dict[str, float] | None:
    path = job.profiler / "framework" / "steps.jsonl" if job.profiler else None
    if not path or not path.is_file():
        return None
    records: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[record["step"]] = record  # a resumed run repeats steps: the last one counts
    exact = [r for r in records.values() if "forward_backward_s" in r]
    if not exact:
        return None
    return {"waiting for data": 1000 * statistics.median(r["data_s"] for r in records.values()),
            "forward + backward": 1000 * statistics.median(r["forward_backward_s"] for r in exact),
            "optimizer": 1000 * statistics.median(r["optimizer_s"] for r in exact)}


def system_series(job: JobDir) -> dict[str, list[tuple[float, float]]]:
    """Mean CPU, host memory, and each GPU's utilisation and memory, over time."""
    if not job.profiler or not (job.profiler / "system").is_dir():
        return {}
    from smdebug.profiler.system_metrics_reader import LocalSystemMetricsReader

    reader = LocalSystemMetricsReader(str(job.profiler))  # it looks under system/ itself
    by_key: dict[str, dict[float, list[float]]] = {}
    for e in reader.get_events(0, 2**62):
        if e.dimension == "CPUUtilization":
            key = "CPU (mean of cores)"
        elif e.name == "MemoryUsedPercent":
            key = "host memory"
        elif e.dimension in ("GPUUtilization", "GPUMemoryUtilization"):
            key = f"{e.name} {'memory' if 'Memory' in e.dimension else 'utilisation'}"
        else:
            continue
        by_key.setdefault(key, {}).setdefault(round(e.timestamp, 1), []).append(float(e.value))
    return {k: sorted((t, statistics.fmean(v)) for t, v in points.items()) for k, points in by_key.items()}


# -- the page ---------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _template() -> jinja2.Template:
    """The page's template, escaping every value it shows."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("dogbreed.debugger", "templates"),
                             autoescape=True,  # every template here is HTML
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=_pct, number=_number)
    env.globals.update(ISSUES=ISSUES, BADGES={ISSUES: "issues", NO_ISSUES: "ok"})
    return env.get_template(TEMPLATE)


def _thumbnail(job: JobDir, relative: object) -> dict[str, str] | None:
    """An example photo the job saved (``examples/NAME``, nothing else: evaluation.json comes
    from the job, and a path there must not put another file of this machine in the page)."""
    folder, _, name = relative.partition("/") if isinstance(relative, str) else ("", "", "")
    path = inside(job.output_data, folder, name) if folder == EXAMPLES_DIR else None
    if path is None or not path.is_file():
        return None
    return {"src": "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode(),
            "alt": path.name}


def _profile(job: JobDir, results: list[RuleResult] | None) -> dict[str, Any]:
    """Median step time split and its plot, the utilisation plot, LowGPUUtilization's verdict."""
    split = step_time_split(job)
    total = sum(split.values()) if split else 0
    series = system_series(job)
    return {"split": time_split_plot(split) if split else None,
            "wait": split["waiting for data"] / total if split and total else 0,
            "utilisation": utilisation_plot(series) if series else None,
            "gpu_rule": next((r for r in results or [] if r.rule == "LowGPUUtilization"), None)}


def _breeds(job: JobDir) -> dict[str, Any] | None:
    """Per-breed accuracy and confusions of the test split when there is one, else of valid."""
    details = job.read_json(EVALUATION_FILE) or {}
    split = next((s for s in ("test", "valid") if details.get(s)), None)
    if split is None:
        return None
    summary = details[split]
    confusions = [{**c, "thumbnails": [t for t in (_thumbnail(job, r) for r in c.get("thumbnails", []))
                                       if t]} for c in summary["confusions"]]
    return {"split": split, "images": summary["images"], "accuracy": summary["accuracy"],
            "plot": per_breed_plot(summary["per_class"]), "confusions": confusions,
            "per_class": sorted(summary["per_class"], key=lambda c: c["breed"])}


def _tuning(job: JobDir) -> dict[str, Any] | None:
    """A tuning job's trials, best first, with their hyperparameters (tuning.json)."""
    tuning = job.read_json(TUNING_FILE)
    if not tuning or not tuning.get("trials"):
        return None
    objective = tuning.get("objective", "valid_acc")
    trials = sorted(tuning["trials"], key=lambda t: -(t.get("objective") or -1e9))
    keys = sorted({k for t in trials for k in t.get("hyperparameters", {})})
    rows = [{"name": t.get("name", ""), "status": t.get("status", ""), "objective": t.get("objective"),
             "cells": [t.get("hyperparameters", {}).get(k, "") for k in keys]} for t in trials]
    return {"objective": objective, "columns": keys, "trials": rows,
            "plot": tuning_plot(tuning["trials"], objective)}


def render(job: JobDir, results: list[RuleResult] | None) -> str:
    """The report's HTML."""
    meta = job.artifact().metadata
    scores, history, training = meta.metrics, meta.history, meta.training
    selected = meta.selected_epoch
    speed = [h["images_per_second"] for h in history if "images_per_second" in h]
    train_images = meta.data.get("train", {}).get("images", 0)
    tiles = [("valid accuracy", _pct(scores.get("valid_acc")), f"epoch {selected} kept"),
             ("test accuracy", _pct(scores.get("test_acc")), "held-out images"),
             ("breeds", meta.num_classes, f"{train_images:,} training images"),
             ("training time", f"{training.get('seconds', 0) / 60:.1f} min",
              f"{statistics.fmean(speed):.0f} images/s" if speed else ""),
             ("rules with issues", sum(r.verdict == ISSUES for r in results) if results else "n/a",
              f"of {len(results)}" if results else "debugger off")]
    hp = meta.hyperparameters
    hp_rows = [(f.name, format_value(hp.get(f.name)), format_value(DEFAULTS.get(f.name)),
                hp.get(f.name) != DEFAULTS.get(f.name)) for f in fields(Hyperparameters) if f.name in hp]
    curves = curves_plot(history, selected, step_losses(job)) if history else None
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{k} {v}" for k, v in meta.versions.items())
    run = {"architecture": meta.architecture, "device": training.get("device", ""),
           "processes": training.get("processes", 1), "finished_at": training.get("finished_at", ""),
           "stopped_early": training.get("stopped_early", False),
           "stopped_by_sigterm": training.get("stopped_by_sigterm", False)}
    return _template().render(
        name=job.name, root=str(job.root), run=run, tiles=tiles, results=results, curves=curves,
        hyperparameters=hp_rows, profile=_profile(job, results), breeds=_breeds(job), tuning=_tuning(job),
        generated=generated, versions=versions)


def write_report(job_folder: Path, *, rule_results: list[RuleResult] | None = None,
                 out: Path | None = None, evaluate: bool = False) -> Path:
    """Render the report of ``job_folder``; verdicts are taken from the job (or evaluated)."""
    job = JobDir.find(job_folder)
    results = rule_results
    if results is None and not evaluate:
        results = load_verdicts(job)
    if results is None and (evaluate or job.tensors is not None):
        from dogbreed.debugger.rules import evaluate_rules  # smdebug: only when the rules run

        results = evaluate_rules(job_folder)
    out = out or job.output_data / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(job, results), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dogbreed report", description=__doc__.split("\n\n")[0])
    parser.add_argument("job_dir", type=Path, help="a training job's folder")
    parser.add_argument("--out", type=Path,
                        help=f"where to write (default: the job's output/data/{REPORT_FILE})")
    parser.add_argument("--rules", action="store_true", help="evaluate the rules again")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.job_dir, out=args.out, evaluate=args.rules)
    except JobDirError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0

"""The job report: one self-contained HTML file (PNG plots inside) from a job's folder.

    dogbreed report JOB_DIR [--out report.html] [--rules]

Sections: results at a glance, rule verdicts, training curves, hyperparameters,
each rule's evidence and advice, where the time went (profile), per-breed
accuracy, the most confused breed pairs with example thumbnails and, when the
folder holds a tuning job's trials (tuning.json), every trial.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import statistics
import sys
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .hyperparameters import DEFAULTS, Hyperparameters, format_value
from .jobdir import JobDir, JobDirError
from .verdicts import ISSUES, NO_ISSUES, RuleResult, load_verdicts

REPORT_FILE = "report.html"
TUNING_FILE = "tuning.json"
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
    """Training loss of every saved step, from the debugger's tensors."""
    if job.tensors is None or not any(job.tensors.rglob("*.tfevents")):
        return None
    import os

    os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
    from smdebug.core.modes import ModeKeys
    from smdebug.trials import create_trial

    trial = create_trial(str(job.tensors), name="report")
    names = trial.tensor_names(collection="losses")
    if not names:
        return None
    tensor = trial.tensor(names[0])
    return [(s, float(tensor.value(s, mode=ModeKeys.TRAIN))) for s in tensor.steps(mode=ModeKeys.TRAIN)]


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


# -- HTML -------------------------------------------------------------------------
CSS = """
body{font:14px/1.5 -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;color:#1f2937;margin:0;
background:#f3f4f6}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #e5e7eb;
padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
.sub{color:#6b7280}.card{background:#fff;border-radius:10px;padding:16px 18px;margin:12px 0;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px}
.tile{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.tile b{display:block;font-size:22px}.tile span{color:#6b7280;font-size:12px}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:5px 8px;border-bottom:1px solid
#f0f0f0;vertical-align:top}th{color:#6b7280;font-weight:600;font-size:12px}
.badge{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:600;
white-space:nowrap}.issues{background:#fee2e2;color:#b91c1c}.ok{background:#dcfce7;color:#15803d}
.nodata{background:#f3f4f6;color:#4b5563}img.plot{max-width:100%}img.thumb{width:84px;height:84px;
object-fit:cover;border-radius:6px;margin-right:4px}.changed{font-weight:600}
details summary{cursor:pointer;color:#2563eb}code{background:#f3f4f6;padding:0 4px;border-radius:4px}
.advice{background:#eff6ff;border-left:3px solid #2563eb;padding:6px 10px;margin:8px 0;border-radius:4px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _badge(verdict: str) -> str:
    cls = {ISSUES: "issues", NO_ISSUES: "ok"}.get(verdict, "nodata")
    return f'<span class="badge {cls}">{_e(verdict)}</span>'


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _img(src: str, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" src="{src}" alt="{_e(alt)}">'


def _thumb(job: JobDir, relative: str) -> str:
    path = job.output_data / relative
    if not path.is_file():
        return ""
    return _img("data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode(), path.name, "thumb")


def _rules_section(results: list[RuleResult]) -> str:
    rows = "".join(f"<tr><td><b>{_e(r.rule)}</b></td><td>{_badge(r.verdict)}</td>"
                   f"<td>{_e(r.summary)}</td></tr>" for r in results)
    details = []
    for r in results:
        evidence = "".join(
            f"<tr><td>{_e(f.mode or '')} {_e('' if f.step is None else f.step)}</td><td>{_e(f.tensor or '')}"
            f"</td><td>{_e(f.what)}</td></tr>" for f in r.evidence)
        params = ", ".join(f"<code>{_e(k)}={_e(v)}</code>" for k, v in r.parameters.items())
        details.append(
            f'<div class="card"><h3>{_e(r.rule)} {_badge(r.verdict)}</h3><p>{_e(r.summary)}</p>'
            + (f"<table><tr><th>step</th><th>tensor</th><th>evidence</th></tr>{evidence}</table>"
               if evidence else "")
            + (f'<div class="advice">{_e(r.advice)}</div>' if r.verdict == ISSUES else "")
            + f'<p class="sub">Parameters: {params}. <a href="{_e(r.doc)}">SageMaker\'s rule</a></p></div>')
    return (f'<div class="card"><table><tr><th>rule</th><th>verdict</th><th>summary</th></tr>{rows}'
            f'</table></div><details><summary>Evidence, advice and parameters of each rule</summary>'
            f'{"".join(details)}</details>')


def _profile_section(job: JobDir, results: list[RuleResult] | None) -> str:
    parts = []
    split = step_time_split(job)
    if split:
        total = sum(split.values())
        wait = split["waiting for data"] / total if total else 0
        verdict = (f"The training loop waits for data {100 * wait:.0f}% of each step: more loader "
                   "workers (or more CPUs per GPU) would speed it up." if wait > 0.3 else
                   f"Data loading keeps up (waiting {100 * wait:.0f}% of each step): the model's "
                   "compute sets the pace.")
        parts.append(f'<div class="card">{_img(time_split_plot(split), "step time split")}<p>{_e(verdict)}'
                     "</p></div>")
    series = system_series(job)
    if series:
        parts.append(f'<div class="card">{_img(utilisation_plot(series), "utilisation")}</div>')
    gpu_rule = next((r for r in results or [] if r.rule == "LowGPUUtilization"), None)
    if gpu_rule:
        advice = f'<div class="advice">{_e(gpu_rule.advice)}</div>' if gpu_rule.verdict == ISSUES else ""
        parts.append(f'<div class="card"><h3>GPU utilisation (LowGPUUtilization) '
                     f'{_badge(gpu_rule.verdict)}</h3><p>{_e(gpu_rule.summary)}</p>{advice}</div>')
    return "".join(parts) or '<p class="sub">No profile in this job (profiler_interval_ms=0).</p>'


def _breeds_section(job: JobDir) -> str:
    details = job.read_json("evaluation.json")
    if not details:
        return '<p class="sub">No evaluation details in this job.</p>'
    parts = []
    for split in ("test", "valid"):
        summary = details.get(split)
        if not summary:
            continue
        confusions = "".join(
            f"<tr><td>{_e(c['true_breed'])}</td><td>{_e(c['predicted_breed'])}</td><td>{c['count']}</td>"
            f"<td>{''.join(_thumb(job, t) for t in c.get('thumbnails', []))}</td></tr>"
            for c in summary["confusions"])
        table = "".join(f"<tr><td>{_e(c['breed'])}</td><td>{c['images']}</td>"
                        f"<td>{_pct(c['accuracy'])}</td></tr>"
                        for c in sorted(summary["per_class"], key=lambda c: c["breed"]))
        parts.append(
            f'<h3>{split} split: {summary["images"]} images, accuracy {_pct(summary["accuracy"])}</h3>'
            f'<div class="card">{_img(per_breed_plot(summary["per_class"]), "per-breed accuracy")}'
            f"<details><summary>Accuracy of every breed</summary><table><tr><th>breed</th><th>images"
            f"</th><th>accuracy</th></tr>{table}</table></details></div>"
            + '<div class="card"><h3>Most confused pairs</h3>'
            + (f"<table><tr><th>true breed</th><th>predicted as</th><th>times</th><th>examples</th></tr>"
               f"{confusions}</table>" if confusions else f"<p>None: every {split} image was right.</p>")
            + "</div>")
        break  # the test split when there is one, else valid
    return "".join(parts)


def _tuning_section(job: JobDir) -> str:
    tuning = job.read_json(TUNING_FILE)
    if not tuning or not tuning.get("trials"):
        return ""
    objective = tuning.get("objective", "valid_acc")
    trials = sorted(tuning["trials"], key=lambda t: -(t.get("objective") or -1e9))
    keys = sorted({k for t in trials for k in t.get("hyperparameters", {})})
    head = "".join(f"<th>{_e(k)}</th>" for k in keys)
    rows = "".join(
        f"<tr><td>{_e(t.get('name', ''))}</td><td>{_e(t.get('status', ''))}</td>"
        f"<td>{_number(t.get('objective'))}</td>"
        + "".join(f"<td>{_e(t.get('hyperparameters', {}).get(k, ''))}</td>" for k in keys) + "</tr>"
        for t in trials)
    plot = tuning_plot(tuning["trials"], objective)
    return (f'<h2>Hyperparameter tuning: {len(trials)} trials</h2><div class="card">'
            f'{_img(plot, "tuning")}<table><tr><th>trial</th><th>status</th><th>{_e(objective)}</th>{head}'
            f"</tr>{rows}</table></div>")


def render(job: JobDir, results: list[RuleResult] | None) -> str:
    meta = job.metadata()
    scores, history, training = meta["metrics"], meta.get("history", []), meta.get("training", {})
    selected = scores.get("selected_epoch", 0)
    speed = [h["images_per_second"] for h in history if "images_per_second" in h]
    tiles = [("valid accuracy", _pct(scores.get("valid_acc")), f"epoch {selected} kept"),
             ("test accuracy", _pct(scores.get("test_acc")), "held-out images"),
             ("breeds", meta["num_classes"], f"{meta['data']['train']['images']:,} training images"),
             ("training time", f"{training.get('seconds', 0) / 60:.1f} min",
              f"{statistics.fmean(speed):.0f} images/s" if speed else ""),
             ("rules with issues", sum(r.verdict == ISSUES for r in results) if results else "n/a",
              f"of {len(results)}" if results else "debugger off")]
    tiles_html = "".join(f'<div class="tile"><span>{_e(a)}</span><b>{_e(b)}</b><span>{_e(c)}</span></div>'
                         for a, b, c in tiles)
    hp = meta.get("hyperparameters", {})
    hp_rows = "".join(
        f'<tr class="{"changed" if hp.get(f.name) != DEFAULTS.get(f.name) else ""}"><td>{_e(f.name)}</td>'
        f"<td>{_e(format_value(hp.get(f.name)))}</td>"
        f"<td class='sub'>{_e(format_value(DEFAULTS.get(f.name)))}</td></tr>"
        for f in fields(Hyperparameters) if f.name in hp)
    curves = curves_plot(history, selected, step_losses(job)) if history else None
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Training report: {_e(job.name)}</title><style>{CSS}</style></head><body><main>
<h1>Training report: {_e(job.name)}</h1>
<p class="sub">{_e(meta['architecture'])} on {_e(training.get('device', ''))}, {training.get('processes', 1)}
process(es), finished {_e(training.get('finished_at', ''))}{', stopped early' if training.get('stopped_early')
else ''}.</p>
<div class="tiles">{tiles_html}</div>
<h2>Debugger rules</h2>{_rules_section(results) if results else
'<p class="sub">The debugger was off for this job: no rules were evaluated.</p>'}
<h2>Training curves</h2><div class="card">{_img(curves, "curves") if curves else "No history."}</div>
<h2>Hyperparameters</h2><div class="card"><table><tr><th>name</th><th>value</th><th>default</th></tr>
{hp_rows}</table><p class="sub">Bold: changed from the default.</p></div>
<h2>Where the time went</h2>{_profile_section(job, results)}
<h2>Per-breed accuracy</h2>{_breeds_section(job)}
{_tuning_section(job)}
<p class="sub">Generated {generated} by <code>dogbreed report</code> from {_e(job.root)}. {_e(versions)}.</p>
</main></body></html>"""


def write_report(job_folder: Path, *, rule_results: list[RuleResult] | None = None,
                 out: Path | None = None, evaluate: bool = False) -> Path:
    """Render the report of ``job_folder``; verdicts are taken from the job (or evaluated)."""
    job = JobDir.find(job_folder)
    results = rule_results
    if results is None and not evaluate:
        results = load_verdicts(job)
    if results is None and (evaluate or job.tensors is not None):
        from .rules import evaluate_rules  # smdebug: only when the rules run

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

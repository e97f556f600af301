"""SageMaker Debugger's built-in rules, evaluated on a job's own tensors and system profile.

The open-source smdebug package ships the rule machinery (``smdebug.rules.Rule``,
``invoke_rule``, trials) but not the built-in rules themselves, which run in
SageMaker's own rule containers. So each rule here is an ``smdebug.rules.Rule``
subclass run by smdebug's ``invoke_rule`` on the job's smdebug trial, with the
parameters and defaults of the SageMaker documentation (linked per rule), and
LowGPUUtilization takes its defaults from smdebug_rulesconfig's own class.

One difference of scale, decided here: SageMaker saves losses every 500 steps by
default, and compares saved steps; this project saves losses at every step, so
the trend rules compare means, over windows of ``num_steps`` steps
(LossNotDecreasing) or over each training epoch and each evaluation
(Overfit, Overtraining), rather than single noisy batches.

Each rule gives a verdict (issues found / no issues found / not enough data) with
its evidence (step, tensor, value) and what to do about it.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .jobdir import JobDir

log = logging.getLogger(__name__)
ISSUES = "issues found"
NO_ISSUES = "no issues found"
NOT_ENOUGH = "not enough data"
VERDICTS_FILE = "rule-verdicts.json"
MAX_EVIDENCE = 8
DOCS = "https://docs.aws.amazon.com/sagemaker/latest/dg/"
LOW_GPU_DOC = "debugger-built-in-profiler-rules.html"


@dataclass
class Finding:
    what: str
    step: int | None = None  # training (or evaluation) step, as counted in that mode
    mode: str | None = None
    tensor: str | None = None
    value: float | None = None


@dataclass
class RuleResult:
    rule: str
    verdict: str
    summary: str
    evidence: list[Finding] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    advice: str = ""
    doc: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleResult:
        return cls(**{**data, "evidence": [Finding(**f) for f in data.get("evidence", [])]})


def _modes() -> Any:
    from smdebug.core.modes import ModeKeys

    return ModeKeys


def _rule_base() -> type:
    from smdebug.rules import Rule

    return Rule


class _Collecting:
    """Mix-in state for our rules: parameters, findings and the count of data points."""

    NAME = ""
    CHECKS = ""  # what the rule looks at, for the documentation
    DEFAULTS: dict[str, Any] = {}
    DOC = ""
    ADVICE = ""

    def setup(self, params: dict[str, Any]) -> None:
        unknown = set(params) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"{self.NAME}: unknown parameters {sorted(unknown)}")
        self.params = {**self.DEFAULTS, **params}
        self.findings: list[Finding] = []
        self.datapoints = 0
        self.missing = ""

    def found(self, finding: Finding) -> bool:
        self.findings.append(finding)
        return True

    def finish(self) -> None:
        """Checks that need the whole run (after every step was seen)."""

    def result(self) -> RuleResult:
        if self.findings:
            verdict = ISSUES
            summary = self.findings[0].what + (f" (and {len(self.findings) - 1} more)"
                                               if len(self.findings) > 1 else "")
        elif self.datapoints == 0 or self.missing:
            verdict, summary = NOT_ENOUGH, self.missing or "no data for this rule in the job"
        else:
            verdict, summary = NO_ISSUES, f"{self.datapoints} data point(s) checked"
        return RuleResult(self.NAME, verdict, summary, self.findings[:MAX_EVIDENCE], self.params,
                          self.ADVICE, DOCS + self.DOC)


def make_rules() -> dict[str, type]:
    """The rule classes (built lazily: smdebug is imported only when rules run)."""
    Rule = _rule_base()
    modes = _modes()

    class TrialRule(_Collecting, Rule):
        def __init__(self, trial: Any, **params: Any):
            Rule.__init__(self, trial, action_str="")
            self.setup(params)
            self._steps: dict[str, set[int]] = {}

        def mode_of(self, step: int) -> tuple[Any, int]:
            return self.base_trial.mode(step), self.base_trial.mode_step(step)

        def names(self, collection: str | None = None, regex: str | None = None) -> list[str]:
            names = (self.base_trial.tensor_names(collection=collection) if collection
                     else self.base_trial.tensor_names())
            return [n for n in names if regex is None or re.match(regex, n)]

        def at(self, name: str, step: int) -> bool:
            if name not in self._steps:
                self._steps[name] = set(self.base_trial.tensor(name).steps())
            return step in self._steps[name]

        def value(self, name: str, step: int) -> np.ndarray:
            return np.asarray(self.base_trial.tensor(name).value(step), dtype=np.float64)

    class VanishingGradient(TrialRule):
        NAME, DOC = "VanishingGradient", "vanishing-gradient.html"
        CHECKS = "mean absolute value of each gradient tensor, at every saved step"
        DEFAULTS = {"threshold": 1e-7}
        ADVICE = ("Layers whose mean |gradient| is this small stop learning. Check that the learning "
                  "rate is not tiny and the loss not saturated; start from pretrained weights.")

        def invoke_at_step(self, step: int) -> bool:
            mode, mode_step = self.mode_of(step)
            hit = False
            for name in self.names("gradients"):
                if not self.at(name, step):
                    continue
                self.datapoints += 1
                mean_abs = float(np.mean(np.abs(self.value(name, step))))
                if mean_abs < self.params["threshold"]:
                    hit = self.found(Finding(f"mean |gradient| of {name} is {mean_abs:.3g}, below "
                                             f"{self.params['threshold']:g}", mode_step, mode.name,
                                             name, mean_abs))
            return hit

    class ExplodingTensor(TrialRule):
        NAME, DOC = "ExplodingTensor", "exploding-tensor.html"
        CHECKS = "NaN or infinite values in every saved tensor (weights, gradients, losses...)"
        DEFAULTS = {"collection_names": None, "tensor_regex": None, "only_nan": False}
        ADVICE = ("NaN or infinite values: lower lr (and the tuner's upper bound), keep amp's loss "
                  "scaling on, and check the inputs for corrupt values.")

        def invoke_at_step(self, step: int) -> bool:
            mode, mode_step = self.mode_of(step)
            names: list[str] = []
            for c in (self.params["collection_names"] or [None]):
                names += self.names(c, self.params["tensor_regex"])
            hit = False
            for name in dict.fromkeys(names):
                if not self.at(name, step):
                    continue
                self.datapoints += 1
                values = self.value(name, step)
                bad = np.isnan(values) if self.params["only_nan"] else ~np.isfinite(values)
                if bad.any():
                    hit = self.found(Finding(f"{int(bad.sum())} non-finite value(s) in {name}",
                                             mode_step, mode.name, name, float(bad.mean())))
            return hit

    class PoorWeightInitialization(TrialRule):
        NAME, DOC = "PoorWeightInitialization", "poor-weight-initialization.html"
        CHECKS = ("first `steps` training steps: variance ratio of the ReLU inputs across layers, "
                  "spread of the gradients, and a loss that does not improve for `patience` steps")
        DEFAULTS = {"activation_inputs_regex": ".*relu_input", "threshold": 10.0,
                    "distribution_range": 0.001, "patience": 5, "steps": 10}
        ADVICE = ("Activation variance differs widely across layers, gradients are all alike, or the "
                  "loss does not fall in the first steps: start from the ImageNet weights "
                  "(pretrained=true) or fix a custom initialisation. In ResNets, variance does grow "
                  "along the residual sums: read which layers the evidence names.")

        def __init__(self, trial: Any, **params: Any):
            super().__init__(trial, **params)
            self.losses: list[tuple[int, float]] = []
            self.checks = {"variance": 0, "gradients": 0}

        def invoke_at_step(self, step: int) -> bool:
            mode, mode_step = self.mode_of(step)
            if mode != modes.TRAIN or mode_step >= self.params["steps"]:
                return False
            hit = False
            inputs = self.names(regex=self.params["activation_inputs_regex"])
            variances = {n: float(np.var(self.value(n, step))) for n in inputs if self.at(n, step)}
            if len(variances) >= 2:
                self.checks["variance"] += 1
                low, high = min(variances, key=variances.get), max(variances, key=variances.get)
                if variances[high] == 0:
                    hit = self.found(Finding(f"all {len(variances)} activation inputs are constant "
                                             "(zero variance)", mode_step, "TRAIN", "relu inputs", 0.0))
                elif (ratio := variances[high] / variances[low] if variances[low] else math.inf) > \
                        self.params["threshold"]:
                    hit = self.found(Finding(f"activation-input variance ratio {ratio:.3g} between "
                                             f"{high} and {low} (limit {self.params['threshold']:g})",
                                             mode_step, "TRAIN", f"{high} / {low}", ratio))
            grads = [self.value(n, step).ravel() for n in self.names("gradients") if self.at(n, step)]
            if grads:
                self.checks["gradients"] += 1
                p5, p95 = np.percentile(np.concatenate(grads), [5, 95])
                if p95 - p5 < self.params["distribution_range"]:
                    hit = self.found(Finding(f"gradients span only {p95 - p5:.3g} between their 5th "
                                             f"and 95th percentiles (limit "
                                             f"{self.params['distribution_range']:g})",
                                             mode_step, "TRAIN", "all gradients", float(p95 - p5)))
            for name in self.names("losses"):
                if self.at(name, step):
                    self.losses.append((mode_step, float(self.value(name, step))))
            self.datapoints += bool(variances or grads)
            return hit

        def finish(self) -> None:
            if not all(self.checks.values()):
                absent = [k for k, v in self.checks.items() if not v]
                self.missing = f"no {' or '.join(absent)} saved in the first {self.params['steps']} steps"
            best, stale = math.inf, 0
            for mode_step, loss in sorted(self.losses):
                if loss < best:
                    best, stale = loss, 0
                    continue
                stale += 1
                if stale == self.params["patience"]:
                    self.found(Finding(f"the loss did not improve on {best:.4g} for "
                                       f"{self.params['patience']} steps at the start", mode_step,
                                       "TRAIN", "losses", loss))

    class LossSeries(TrialRule):
        """Collects the loss of every step, by mode and phase (a run of steps in one mode)."""

        def __init__(self, trial: Any, **params: Any):
            super().__init__(trial, **params)
            self.phases: list[tuple[Any, list[tuple[int, float]]]] = []

        def invoke_at_step(self, step: int) -> bool:
            mode, mode_step = self.mode_of(step)
            values = [float(self.value(n, step)) for n in self.names("losses") if self.at(n, step)]
            if not values or mode not in (modes.TRAIN, modes.EVAL):
                return False
            if not self.phases or self.phases[-1][0] != mode:
                self.phases.append((mode, []))
            self.phases[-1][1].append((mode_step, values[0]))
            return False

        def means(self) -> list[tuple[Any, int, float]]:
            """(mode, last step of the phase, mean loss) per phase."""
            return [(m, pts[-1][0], float(np.mean([v for _, v in pts]))) for m, pts in self.phases]

    class Overfit(LossSeries):
        NAME, DOC = "Overfit", "overfit.html"
        CHECKS = ("each validation pass's mean loss against the mean loss of the training epoch "
                  "before it")
        DEFAULTS = {"tensor_regex": None, "start_step": 0, "patience": 1, "ratio_threshold": 0.1}
        ADVICE = ("Validation loss is well above training loss: keep augment=true, raise weight_decay "
                  "or label_smoothing, train fewer epochs (patience stops early), or add data. The "
                  "saved model is the best epoch in any case.")

        def finish(self) -> None:
            phases = self.means()
            streak = 0
            for (m1, _, train), (m2, step, valid) in zip(phases, phases[1:], strict=False):
                if not (m1 == modes.TRAIN and m2 == modes.EVAL) or step < self.params["start_step"]:
                    continue
                self.datapoints += 1
                ratio = (valid - train) / train if train else math.inf
                streak = streak + 1 if ratio > self.params["ratio_threshold"] else 0
                if streak >= self.params["patience"]:
                    self.found(Finding(f"validation loss {valid:.4g} is {100 * ratio:.0f}% above the "
                                       f"training loss {train:.4g}", step, "EVAL", "losses", ratio))
            if not self.datapoints:
                self.missing = "needs training and evaluation losses"

    class Overtraining(LossSeries):
        NAME, DOC = "Overtraining", "overtraining.html"
        CHECKS = ("mean loss per training epoch and per validation pass: no improvement by `delta` "
                  "for `patience_*` of them")
        DEFAULTS = {"patience_train": 5, "patience_validation": 10, "delta": 0.01}
        ADVICE = ("The losses stopped improving: fewer epochs, or early stopping with a smaller "
                  "patience, save time and money.")

        def finish(self) -> None:
            for mode, patience in ((modes.TRAIN, self.params["patience_train"]),
                                   (modes.EVAL, self.params["patience_validation"])):
                series = [(s, v) for m, s, v in self.means() if m == mode]
                if len(series) <= patience:
                    continue
                self.datapoints += len(series)
                best, stale = math.inf, 0
                for step, value in series:
                    if value < best - self.params["delta"]:
                        best, stale = value, 0
                    else:
                        stale += 1
                        if stale == patience:
                            self.found(Finding(f"{mode.name.lower()} loss has not improved by "
                                               f"{self.params['delta']} for {patience} epochs",
                                               step, mode.name, "losses", value))
            if not self.datapoints:
                self.missing = (f"needs more than {self.params['patience_train']} epochs (or "
                                f"{self.params['patience_validation']} evaluations)")

    class LossNotDecreasing(LossSeries):
        NAME, DOC = "LossNotDecreasing", "loss-not-decreasing.html"
        CHECKS = ("mean training loss over consecutive windows of `num_steps` steps: falls by less "
                  "than `diff_percent`%")
        DEFAULTS = {"num_steps": 10, "diff_percent": 0.1, "increase_threshold_percent": 5,
                    "mode": "TRAIN"}
        ADVICE = ("The training loss stalls: raise lr or shorten a plateau; check the labels. At the "
                  "end of a cosine schedule a flat loss is expected.")

        def finish(self) -> None:
            mode = getattr(modes, self.params["mode"])
            points = [p for m, pts in self.phases if m == mode for p in pts]
            n = self.params["num_steps"]
            windows = [points[i:i + n] for i in range(0, len(points) - n + 1, n)]
            means = [(w[-1][0], float(np.mean([v for _, v in w]))) for w in windows]
            for (_, before), (step, after) in zip(means, means[1:], strict=False):
                self.datapoints += 1
                change = 100 * (before - after) / before if before else 0.0
                if change < self.params["diff_percent"]:
                    rose = -change > self.params["increase_threshold_percent"]
                    how = (f"up {-change:.1f}%, more than the {self.params['increase_threshold_percent']}% "
                           "allowed" if rose else f"up {-change:.2f}%" if change < 0
                           else f"down only {change:.2f}%")
                    self.found(Finding(
                        f"mean loss over {n} steps went from {before:.4g} to {after:.4g} ({how})",
                        step, mode.name, "losses", after))
            if not self.datapoints:
                self.missing = f"needs at least {2 * n} training steps"

    return {cls.NAME: cls for cls in (VanishingGradient, ExplodingTensor, PoorWeightInitialization,
                                      Overfit, Overtraining, LossNotDecreasing)}


# -- LowGPUUtilization: from the system profile -----------------------------------
def low_gpu_defaults() -> dict[str, Any]:
    """SageMaker's defaults, read from smdebug_rulesconfig's own LowGPUUtilization class."""
    from smdebug_rulesconfig.profiler_rules.rules import LowGPUUtilization

    sig = inspect.signature(LowGPUUtilization.__init__)
    return {k: p.default for k, p in sig.parameters.items() if k != "self"}


def gpu_series(profiler_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """GPUUtilization per (node, GPU) as (timestamp, percent), read with smdebug's own reader."""
    from smdebug.profiler.system_metrics_reader import LocalSystemMetricsReader

    if not (profiler_dir / "system").is_dir():
        return {}
    reader = LocalSystemMetricsReader(str(profiler_dir))  # it looks under system/ itself
    events = reader.get_events(0, 2**62)
    series: dict[str, list[tuple[float, float]]] = {}
    for e in events:
        if e.dimension == "GPUUtilization":
            series.setdefault(f"{e.node_id}/{e.name}", []).append((e.timestamp, float(e.value)))
    return {k: sorted(v) for k, v in series.items()}


def low_gpu_utilization(profiler_dir: Path | None, **params: Any) -> RuleResult:
    p = {**low_gpu_defaults(), **params}
    p.pop("scan_interval_us", None)
    advice = ("The GPU waits: if the profile's step time is mostly data wait, raise workers (or pick "
              "an instance with more CPUs per GPU); otherwise raise batch_size. Utilisation swinging "
              "between busy and idle points at input stalls.")
    result = RuleResult("LowGPUUtilization", NOT_ENOUGH, "", [], p, advice,
                        DOCS + LOW_GPU_DOC)
    series = gpu_series(profiler_dir) if profiler_dir else {}
    if not series:
        result.summary = "no GPU utilisation in the system profile (a CPU run, or profiling off)"
        return result
    checked = 0
    for gpu, points in series.items():
        values = [v for _, v in points][p["patience"]:]
        for start in range(0, len(values) - p["window"] + 1, p["window"]):
            window = values[start:start + p["window"]]
            checked += 1
            p5, p95 = np.percentile(window, [5, 95])
            if p95 < p["threshold_p95"]:
                result.evidence.append(Finding(f"{gpu}: 95th percentile of utilisation {p95:.0f}% "
                                               f"< {p['threshold_p95']}% (underused)", None, None, gpu,
                                               float(p95)))
            elif p5 < p["threshold_p5"]:
                result.evidence.append(Finding(f"{gpu}: utilisation swings from {p5:.0f}% (5th "
                                               f"percentile) to {p95:.0f}% (fluctuating)", None, None,
                                               gpu, float(p5)))
    if checked == 0:
        longest = max(len(v) for v in series.values())
        result.summary = (f"{longest} samples per GPU; the rule needs more than {p['patience']} + "
                          f"{p['window']}")
    elif result.evidence:
        result.verdict, result.summary = ISSUES, result.evidence[0].what
        result.evidence = result.evidence[:MAX_EVIDENCE]
    else:
        result.verdict, result.summary = NO_ISSUES, f"{checked} window(s) of utilisation checked"
    return result


LOW_GPU_CHECKS = ("GPU utilisation in the system profile, per GPU over sliding windows of `window` "
                  "samples: 95th percentile below `threshold_p95`% (underused) or 5th percentile "
                  "below `threshold_p5`% (fluctuating), after `patience` samples")


def rules_table() -> str:
    """The rules, what they check and their parameters, as a Markdown table (README)."""
    rows = ["| rule | what it checks | parameters (SageMaker's defaults) |", "|---|---|---|"]
    classes = make_rules()

    def params(values: dict[str, Any]) -> str:
        return ", ".join(f"`{k}={v}`" for k, v in values.items())

    for name in RULE_NAMES:
        cls = classes.get(name)
        doc, checks, defaults = ((cls.DOC, cls.CHECKS, cls.DEFAULTS) if cls else
                                 (LOW_GPU_DOC, LOW_GPU_CHECKS, low_gpu_defaults()))
        rows.append(f"| [{name}]({DOCS}{doc}) | {checks} | {params(defaults)} |")
    return "\n".join(rows) + "\n"


# -- running them -----------------------------------------------------------------
RULE_NAMES = ("VanishingGradient", "PoorWeightInitialization", "ExplodingTensor", "Overfit",
              "Overtraining", "LossNotDecreasing", "LowGPUUtilization")


def evaluate_rules(job_folder: Path) -> list[RuleResult]:
    """Every rule's verdict for a job folder (see :mod:`dogbreed.jobdir`)."""
    job = JobDir.find(job_folder)
    results = [_tensor_rule(name, cls, job.tensors) for name, cls in make_rules().items()]
    results.append(low_gpu_utilization(job.profiler))
    order = {name: i for i, name in enumerate(RULE_NAMES)}
    results.sort(key=lambda r: order[r.rule])
    save_verdicts(job.output_data, results)
    return results


def _tensor_rule(name: str, cls: type, tensors: Path | None) -> RuleResult:
    if tensors is None or not any(tensors.rglob("*.tfevents")):
        return RuleResult(name, NOT_ENOUGH, "no tensors: the debugger was off for this job",
                          parameters=dict(cls.DEFAULTS), advice=cls.ADVICE, doc=DOCS + cls.DOC)
    from smdebug.rules import invoke_rule
    from smdebug.trials import create_trial

    os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
    trial = create_trial(str(tensors), name=name)
    rule = cls(trial)
    steps = trial.steps()
    if steps:
        invoke_rule(rule, start_step=steps[0], end_step=steps[-1] + 1, raise_eval_cond=False)
    rule.finish()
    return rule.result()


def save_verdicts(out_dir: Path, results: list[RuleResult]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / VERDICTS_FILE
    path.write_text(json.dumps([r.to_json() for r in results], indent=1), encoding="utf-8")
    return path


def load_verdicts(job: JobDir) -> list[RuleResult] | None:
    data = job.read_json(VERDICTS_FILE)
    return None if data is None else [RuleResult.from_json(d) for d in data]


def log_verdicts(results: list[RuleResult]) -> None:
    for r in results:
        log.info("rule %s: %s: %s", r.rule, r.verdict, r.summary)

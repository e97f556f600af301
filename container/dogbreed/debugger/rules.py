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

Weights, gradients and ReLU inputs are saved as reductions, not in full (min and
max; mean |gradient|; the ReLU inputs' variance: :data:`dogbreed.debugger.hook.REDUCTIONS`).
The rules read those reduction values, which smdebug computes from the full tensor
in a job saved in full, so older jobs give the same verdicts. PoorWeightInitialization's
gradient percentiles come from the job's fixed sample of gradient values.

Each rule gives a verdict (issues found / no issues found / not enough data) with
its evidence (step, tensor, value) and what to do about it; the verdict types are
in :mod:`dogbreed.debugger.verdicts`. This module imports smdebug: import it only to run rules.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from smdebug.core.modes import ModeKeys
from smdebug.rules import invoke_rule
from smdebug.trials import create_trial

from dogbreed.contract.jobdir import JobDir
from dogbreed.debugger.hook import GRADIENT_SAMPLE
from dogbreed.debugger.loss_rules import LossNotDecreasing, Overfit, Overtraining
from dogbreed.debugger.system_rules import (
    DOCS,
    LOW_GPU_CHECKS,
    LOW_GPU_DOC,
    low_gpu_defaults,
    low_gpu_utilization,
)
from dogbreed.debugger.trial_rule import TrialRule, stalls
from dogbreed.debugger.verdicts import (
    NOT_ENOUGH,
    RULE_NAMES,
    Finding,
    RuleResult,
    save_verdicts,
)


# -- rules on the job's tensors -----------------------------------------------------
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
            mean_abs = self.reduction(name, step, "mean", abs=True)
            if mean_abs < self.params["threshold"]:
                hit = self.found(Finding(f"mean |gradient| of {name} is {mean_abs:.3g}, below "
                                         f"{self.params['threshold']:g}", mode_step, mode.name,
                                         name, mean_abs))
        return hit


class ExplodingTensor(TrialRule):
    NAME, DOC = "ExplodingTensor", "exploding-tensor.html"
    CHECKS = ("NaN or infinite values in every saved tensor (weights, gradients, losses...), "
              "through its minimum and maximum")
    DEFAULTS = {"collection_names": None, "tensor_regex": None, "only_nan": False}
    ADVICE = ("NaN or infinite values: lower lr (and the tuner's upper bound), keep amp's loss "
              "scaling on, and check the inputs for corrupt values.")

    def watched(self) -> list[str]:
        """The tensors of ``collection_names`` (all by default) that match ``tensor_regex``."""
        names: list[str] = []
        for c in (self.params["collection_names"] or [None]):
            names += self.names(c, self.params["tensor_regex"])
        return list(dict.fromkeys(names))

    def invoke_at_step(self, step: int) -> bool:
        mode, mode_step = self.mode_of(step)
        hit = False
        for name in self.watched():
            if not self.at(name, step):
                continue
            self.datapoints += 1
            # NaN propagates into both, an infinity into one: they flag any non-finite value.
            extremes = np.array([self.reduction(name, step, "min"), self.reduction(name, step, "max")])
            bad = np.isnan(extremes) if self.params["only_nan"] else ~np.isfinite(extremes)
            if bad.any():
                hit = self.found(Finding(f"non-finite value(s) in {name} (min {extremes[0]:g}, "
                                         f"max {extremes[1]:g})", mode_step, mode.name, name))
        return hit


class PoorWeightInitialization(TrialRule):
    NAME, DOC = "PoorWeightInitialization", "poor-weight-initialization.html"
    CHECKS = ("first `steps` training steps: variance ratio of the ReLU inputs across layers, "
              "spread of the gradients (a fixed sample of all their values), and a loss that does "
              "not improve for `patience` steps")
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
        if mode != ModeKeys.TRAIN or mode_step >= self.params["steps"]:
            return False
        inputs = self.names(regex=self.params["activation_inputs_regex"])
        variances = {n: self.reduction(n, step, "variance") for n in inputs if self.at(n, step)}
        grads = self._gradient_values(step)
        hit = self._check_variances(variances, mode_step)
        hit = self._check_gradients(grads, mode_step) or hit
        self.losses += [(mode_step, float(self.value(n, step)))
                        for n in self.names("losses") if self.at(n, step)]
        self.datapoints += bool(variances or grads)
        return hit

    def _gradient_values(self, step: int) -> list[np.ndarray]:
        """The job's gradient sample at ``step``; in a job saved before the sample existed, its
        gradients in full."""
        sample = [self.value(n, step).ravel() for n in self.names(GRADIENT_SAMPLE) if self.at(n, step)]
        if sample or GRADIENT_SAMPLE in self.base_trial.collections():
            return sample
        full = (self.full_value(n, step) for n in self.names("gradients") if self.at(n, step))
        return [v.ravel() for v in full if v is not None]

    def _check_variances(self, variances: dict[str, float], mode_step: int) -> bool:
        """The ReLU inputs' variances differ by more than ``threshold`` times across layers."""
        if len(variances) < 2:
            return False
        self.checks["variance"] += 1
        low, high = min(variances, key=variances.get), max(variances, key=variances.get)
        if variances[high] == 0:
            return self.found(Finding(f"all {len(variances)} activation inputs are constant "
                                      "(zero variance)", mode_step, "TRAIN", "relu inputs", 0.0))
        ratio = variances[high] / variances[low] if variances[low] else math.inf
        if ratio > self.params["threshold"]:
            return self.found(Finding(f"activation-input variance ratio {ratio:.3g} between "
                                      f"{high} and {low} (limit {self.params['threshold']:g})",
                                      mode_step, "TRAIN", f"{high} / {low}", ratio))
        return False

    def _check_gradients(self, grads: list[np.ndarray], mode_step: int) -> bool:
        """The gradients span less than ``distribution_range`` (5th to 95th percentile)."""
        if not grads:
            return False
        self.checks["gradients"] += 1
        p5, p95 = np.percentile(np.concatenate(grads), [5, 95])
        if p95 - p5 < self.params["distribution_range"]:
            return self.found(Finding(f"gradients span only {p95 - p5:.3g} between their 5th "
                                      f"and 95th percentiles (limit "
                                      f"{self.params['distribution_range']:g})",
                                      mode_step, "TRAIN", "all gradients", float(p95 - p5)))
        return False

    def finish(self) -> None:
        absent = [k for k, v in self.checks.items() if not v]
        if absent:
            self.missing = f"no {' or '.join(absent)} saved in the first {self.params['steps']} steps"
        for mode_step, loss, best in stalls(sorted(self.losses), self.params["patience"]):
            self.found(Finding(f"the loss did not improve on {best:.4g} for "
                               f"{self.params['patience']} steps at the start", mode_step,
                               "TRAIN", "losses", loss))


RULES: dict[str, type[TrialRule]] = {cls.NAME: cls for cls in (
    VanishingGradient, ExplodingTensor, PoorWeightInitialization, Overfit, Overtraining,
    LossNotDecreasing)}


# -- the README's table -----------------------------------------------------------
def _parameters(values: dict[str, Any]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in values.items())


def rules_table() -> str:
    """The rules, what they check and their parameters, as a Markdown table (README)."""
    rows = ["| rule | what it checks | parameters (SageMaker's defaults) |", "|---|---|---|"]
    for name in RULE_NAMES:
        cls = RULES.get(name)
        doc, checks, defaults = ((cls.DOC, cls.CHECKS, cls.DEFAULTS) if cls else
                                 (LOW_GPU_DOC, LOW_GPU_CHECKS, low_gpu_defaults()))
        rows.append(f"| [{name}]({DOCS}{doc}) | {checks} | {_parameters(defaults)} |")
    return "\n".join(rows) + "\n"


# -- running them -----------------------------------------------------------------
def evaluate_rules(job_folder: Path) -> list[RuleResult]:
    """Every rule's verdict for a job folder (see :mod:`dogbreed.contract.jobdir`), saved in the job."""
    job = JobDir.find(job_folder)
    results = [_tensor_rule(name, cls, job.tensors) for name, cls in RULES.items()]
    results.append(low_gpu_utilization(job.profiler))
    order = {name: i for i, name in enumerate(RULE_NAMES)}
    results.sort(key=lambda r: order[r.rule])
    save_verdicts(job.output_data, results)
    return results


def _tensor_rule(name: str, cls: type[TrialRule], tensors: Path | None) -> RuleResult:
    if tensors is None or not any(tensors.rglob("*.tfevents")):
        return RuleResult(name, NOT_ENOUGH, "no tensors: the debugger was off for this job",
                          parameters=dict(cls.DEFAULTS), advice=cls.ADVICE, doc=DOCS + cls.DOC)
    trial = create_trial(str(tensors), name=name)
    rule = cls(trial)
    steps = trial.steps()
    if steps:
        invoke_rule(rule, start_step=steps[0], end_step=steps[-1] + 1, raise_eval_cond=False)
    rule.finish()
    return rule.result()

"""The Debugger rules on the loss series: Overfit, Overtraining and LossNotDecreasing, comparing means
over windows of steps or phases (this project saves the loss at every step)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from smdebug.core.modes import ModeKeys

from dogbreed.debugger.system_rules import (
    sliding_windows,
)
from dogbreed.debugger.trial_rule import TrialRule, stalls
from dogbreed.debugger.verdicts import (
    Finding,
)


class LossSeries(TrialRule):
    """Collects the loss of every step, by mode and phase (a run of steps in one mode)."""

    def __init__(self, trial: Any, **params: Any):
        super().__init__(trial, **params)
        self.phases: list[tuple[Any, list[tuple[int, float]]]] = []

    def invoke_at_step(self, step: int) -> bool:
        mode, mode_step = self.mode_of(step)
        values = [float(self.value(n, step)) for n in self.names("losses") if self.at(n, step)]
        if not values or mode not in (ModeKeys.TRAIN, ModeKeys.EVAL):
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

    def train_then_valid(self) -> Iterator[tuple[int, float, float]]:
        """(step, training mean loss, validation mean loss) of each evaluation that follows a
        training epoch, from ``start_step`` on."""
        phases = self.means()
        for (m1, _, train), (m2, step, valid) in zip(phases, phases[1:], strict=False):
            if m1 == ModeKeys.TRAIN and m2 == ModeKeys.EVAL and step >= self.params["start_step"]:
                yield step, train, valid

    def finish(self) -> None:
        streak = 0
        for step, train, valid in self.train_then_valid():
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
        for mode, patience in ((ModeKeys.TRAIN, self.params["patience_train"]),
                               (ModeKeys.EVAL, self.params["patience_validation"])):
            series = [(s, v) for m, s, v in self.means() if m == mode]
            if len(series) <= patience:
                continue
            self.datapoints += len(series)
            for step, value, _ in stalls(series, patience, self.params["delta"]):
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

    def window_means(self, mode: Any) -> list[tuple[int, float]]:
        """(last step, mean loss) of each window of ``num_steps`` steps in ``mode``."""
        points = [p for m, pts in self.phases if m == mode for p in pts]
        return [(w[-1][0], float(np.mean([v for _, v in w])))
                for w in sliding_windows(points, self.params["num_steps"])]

    def describe(self, change: float) -> str:
        """How the mean loss moved, ``change`` being its fall in percent."""
        limit = self.params["increase_threshold_percent"]
        if -change > limit:
            return f"up {-change:.1f}%, more than the {limit}% allowed"
        return f"up {-change:.2f}%" if change < 0 else f"down only {change:.2f}%"

    def finish(self) -> None:
        mode = getattr(ModeKeys, self.params["mode"])
        n = self.params["num_steps"]
        means = self.window_means(mode)
        for (_, before), (step, after) in zip(means, means[1:], strict=False):
            self.datapoints += 1
            change = 100 * (before - after) / before if before else 0.0
            if change < self.params["diff_percent"]:
                self.found(Finding(f"mean loss over {n} steps went from {before:.4g} to {after:.4g} "
                                   f"({self.describe(change)})", step, mode.name, "losses", after))
        if not self.datapoints:
            self.missing = f"needs at least {2 * n} training steps"

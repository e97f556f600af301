"""The base of the Debugger rules run on a job's own tensors: an smdebug Rule with SageMaker's
parameters that collects findings and gives a verdict."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
from smdebug.exceptions import TensorUnavailableForStep
from smdebug.rules import Rule

from dogbreed.debugger.system_rules import (
    DOCS,
    MAX_EVIDENCE,
)
from dogbreed.debugger.verdicts import (
    ISSUES,
    NO_ISSUES,
    NOT_ENOUGH,
    Finding,
    RuleResult,
)


def stalls(series: Iterable[tuple[int, float]], patience: int,
            delta: float = 0.0) -> Iterator[tuple[int, float, float]]:
    """(step, value, best so far) where ``series`` has not improved on its best by more than
    ``delta`` for ``patience`` points in a row."""
    best, stale = math.inf, 0
    for step, value in series:
        if value < best - delta:
            best, stale = value, 0
            continue
        stale += 1
        if stale == patience:
            yield step, value, best


class TrialRule(Rule):
    """An smdebug rule with SageMaker's parameters, that collects findings and counts data points."""

    NAME: ClassVar[str] = ""
    CHECKS: ClassVar[str] = ""  # what the rule looks at, for the documentation
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    DOC: ClassVar[str] = ""
    ADVICE: ClassVar[str] = ""

    def __init__(self, trial: Any, **params: Any):
        super().__init__(trial, action_str="")
        unknown = set(params) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"{self.NAME}: unknown parameters {sorted(unknown)}")
        self.params = {**self.DEFAULTS, **params}
        self.findings: list[Finding] = []
        self.datapoints = 0
        self.missing = ""
        self._steps: dict[str, set[int]] = {}

    def found(self, finding: Finding) -> bool:
        self.findings.append(finding)
        return True

    def finish(self) -> None:
        """Checks that need the whole run (after every step was seen)."""

    def result(self) -> RuleResult:
        if self.findings:
            more = len(self.findings) - 1
            verdict, summary = ISSUES, self.findings[0].what + (f" (and {more} more)" if more else "")
        elif self.datapoints == 0 or self.missing:
            verdict, summary = NOT_ENOUGH, self.missing or "no data for this rule in the job"
        else:
            verdict, summary = NO_ISSUES, f"{self.datapoints} data point(s) checked"
        return RuleResult(self.NAME, verdict, summary, self.findings[:MAX_EVIDENCE], self.params,
                          self.ADVICE, DOCS + self.DOC)

    def mode_of(self, step: int) -> tuple[Any, int]:
        return self.base_trial.mode(step), self.base_trial.mode_step(step)

    def names(self, collection: str | None = None, regex: str | None = None) -> list[str]:
        if collection and collection not in self.base_trial.collections():
            return []  # e.g. the gradient sample in a job saved before it existed
        names = (self.base_trial.tensor_names(collection=collection) if collection
                 else self.base_trial.tensor_names())
        return [n for n in names if regex is None or re.match(regex, n)]

    def at(self, name: str, step: int) -> bool:
        if name not in self._steps:
            self._steps[name] = set(self.base_trial.tensor(name).steps())
        return step in self._steps[name]

    def value(self, name: str, step: int) -> np.ndarray:
        return np.asarray(self.base_trial.tensor(name).value(step), dtype=np.float64)

    def reduction(self, name: str, step: int, reduction: str, abs: bool = False) -> float:
        """A saved reduction of a tensor (or, for a tensor saved in full, computed from it)."""
        return float(self.base_trial.tensor(name).reduction_value(step, reduction, abs=abs))

    def full_value(self, name: str, step: int) -> np.ndarray | None:
        """The tensor's values, None when only its reductions were saved."""
        try:
            return self.value(name, step)
        except TensorUnavailableForStep:
            return None

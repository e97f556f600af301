"""The Debugger rules' verdicts: their types and their file in a job's output/data.

Cheap to import (no smdebug, torch or numpy), so that the report and ``dogctl``
read verdicts without loading the rules; :mod:`dogbreed.debugger.rules` gives them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.contract.jobdir import JobDir

log = logging.getLogger(__name__)
ISSUES = "issues found"
NO_ISSUES = "no issues found"
NOT_ENOUGH = "not enough data"
VERDICTS_FILE = "rule-verdicts.json"
# Every rule, in the order of the verdicts (SageMaker's rule names).
RULE_NAMES = ("VanishingGradient", "PoorWeightInitialization", "ExplodingTensor", "Overfit",
              "Overtraining", "LossNotDecreasing", "LowGPUUtilization")


@dataclass
class Finding:
    """One piece of evidence for a rule's verdict."""

    what: str
    step: int | None = None  # training (or evaluation) step, as counted in that mode
    mode: str | None = None
    tensor: str | None = None
    value: float | None = None


@dataclass
class RuleResult:
    """A rule's verdict, its evidence, the parameters it ran with and what to do about it."""

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


def save_verdicts(out_dir: Path, results: list[RuleResult]) -> Path:
    """Write the verdicts to ``out_dir``/rule-verdicts.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / VERDICTS_FILE
    path.write_text(json.dumps([r.to_json() for r in results], indent=1), encoding="utf-8")
    return path


def load_verdicts(job: JobDir) -> list[RuleResult] | None:
    """The job's saved verdicts, None when the rules never ran."""
    data = job.read_json(VERDICTS_FILE)
    return None if data is None else [RuleResult.from_json(d) for d in data]


def verdict_lines(results: list[RuleResult]) -> list[str]:
    """One aligned line per rule, for a terminal."""
    return [f"  {r.rule:<25} {r.verdict:<16} {r.summary}" for r in results]


def log_verdicts(results: list[RuleResult]) -> None:
    for r in results:
        log.info("rule %s: %s: %s", r.rule, r.verdict, r.summary)

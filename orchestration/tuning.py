"""What the two tuners share: the study's setup, its search-range syntax, and its results
(tuning.json, which the report reads, and the best trial's hyperparameters file)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.contract.hyperparameters import Tune, parse, search_space
from dogbreed.contract.jobdir import TUNING_FILE
from dogbreed.errors import UserError

BEST_FILE = "best-hyperparameters.json"
# What every trial runs with unless given: a trial's model is never served, so no int8 model is
# calibrated for it (seconds per trial). Not part of the best trial's hyperparameters file.
TRIAL_DEFAULTS = {"int8_calibration_images": "0"}


@dataclass(frozen=True)
class TuningSetup:
    name: str
    trials: int = 20
    parallel: int = 2
    tuned: tuple[str, ...] = ("lr", "eps", "weight_decay", "batch_size", "epochs")
    fixed: tuple[tuple[str, str], ...] = ()
    seed: int = 0
    ranges: tuple[tuple[str, Tune], ...] = ()  # overrides of the default search space

    def trial_hyperparameters(self) -> dict[str, str]:
        """The hyperparameters every trial runs with besides the tuned ones."""
        return {**TRIAL_DEFAULTS, **dict(self.fixed)}

    def space(self) -> dict[str, Tune]:
        """The tuned hyperparameters' ranges; a fixed value takes a name out of the search."""
        fixed = dict(self.fixed)
        tuned = [n for n in self.tuned if n not in fixed]
        return {**search_space(tuned), **{k: v for k, v in self.ranges if k not in fixed}}


def parse_range(text: str) -> tuple[str, Tune]:
    """NAME=LOW:HIGH[:log] or NAME=A|B|C -> a search range."""
    name, sep, spec = text.partition("=")
    usage = f"--range takes NAME=LOW:HIGH[:log] or NAME=A|B|C, got {text!r}"
    if not sep or not name or not spec:
        raise UserError(usage)
    if "|" in spec:
        return name, Tune(values=tuple(getattr(parse({name: v}), name) for v in spec.split("|")))
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise UserError(usage)
    low, high = (getattr(parse({name: v}), name) for v in parts[:2])
    return name, Tune(low=low, high=high, log=len(parts) == 3)


def write_results(folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Write tuning.json (the report reads it) and the best trial's hyperparameters, for either
    tuner; ``summary`` gains ``best_file``."""
    best = summary["best"]
    summary["best_file"] = str(folder / BEST_FILE) if best else None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TUNING_FILE).write_text(json.dumps(summary, indent=1, default=str))
    if best:
        (folder / BEST_FILE).write_text(json.dumps(best["hyperparameters"], indent=1) + "\n")
    return summary


def trials_table(trials: Sequence[Mapping[str, Any]], objective: str, space_names: list[str]) -> str:
    """Every trial (tuning.json's rows), best first."""
    rows = sorted(trials, key=lambda t: -(t["objective"] if t["objective"] is not None else -1))
    names = " ".join(f"{n:>12}" for n in space_names)
    lines = [f"{'trial':<10} {'status':<9} {objective:>9} {names}"]
    for t in rows:
        value = f"{t['objective']:.4f}" if t["objective"] is not None else "-"
        params = " ".join(f"{t['hyperparameters'].get(n, ''):>12}" for n in space_names)
        lines.append(f"{t['name']:<10} {t['status']:<9} {value:>9} {params}")
    return "\n".join(lines)

"""Batch transform, whichever backend ran it: SageMaker's output layout (one ``<photo>.out`` per
input object, holding the container's JSON answer) read back, tabulated and summarised.

Both backends write that layout: SageMaker's transform job in S3 (downloaded), the local one
through the real ``serve`` on this machine (:mod:`orchestration.local.transform`).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dogbreed.contract.artifact import display_name
from dogbreed.errors import UserError

OUT_SUFFIX = ".out"  # SageMaker names each output object after its input object, plus this
RESULTS_FILE = "predictions.csv"
RAW_CONTENT_TYPE = "application/x-image"  # one photo per object, its content decides the format


def photos(folder: Path) -> list[str]:
    """The files under ``folder`` (recursively, hidden ones skipped) as relative POSIX paths."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not found:
        raise UserError(f"{folder} holds no files to transform")
    return found


@dataclass
class TransformSummary:
    photos: int
    answered: int
    failed: dict[str, str]  # relative path -> why (missing output, unreadable answer, the server's error)
    labelled: int  # photos in a folder named like one of the predicted classes
    correct: int
    predicted: Counter = field(default_factory=Counter)  # top class -> photos
    results: Path | None = None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def _top(path: Path) -> dict:
    answer = json.loads(path.read_text())
    (photo,) = answer["predictions"]
    return photo[0]


def summarise(inputs: list[str], output_dir: Path,
              failures: dict[str, str] | None = None) -> TransformSummary:
    """Read ``output_dir/<input>.out`` for each input, write :data:`RESULTS_FILE` beside the
    outputs (photo, class, breed, probability, label) and count. A photo's label is its folder's
    name when that folder is named like a class (``001.Affenpinscher``); otherwise it has none."""
    failed = dict(failures or {})
    rows = []
    for rel in inputs:
        if rel in failed:
            continue
        out = output_dir / (rel + OUT_SUFFIX)
        if not out.is_file():
            failed[rel] = "no output (the job did not transform it)"
            continue
        try:
            top = _top(out)
            rows.append((rel, top["class"], top["breed"], float(top["probability"])))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            failed[rel] = f"unreadable answer in {out.name}: {type(exc).__name__}: {exc}"
    known = {cls for _, cls, _, _ in rows} | _folder_classes(inputs)
    labelled = correct = 0
    results = output_dir.parent / RESULTS_FILE
    with open(results, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["photo", "class", "breed", "probability", "label"])
        for rel, cls, breed, probability in rows:
            parts = rel.split("/")
            label = parts[-2] if len(parts) > 1 and parts[-2] in known else ""
            if label:
                labelled += 1
                correct += label == cls
            writer.writerow([rel, cls, breed, f"{probability:.4f}", label])
    return TransformSummary(len(inputs), len(rows), failed, labelled, correct,
                            Counter(cls for _, cls, _, _ in rows), results)


def _folder_classes(inputs: list[str]) -> set[str]:
    """Folder names shaped like the dataset's class folders (``NNN.Breed_name``)."""
    names = {rel.split("/")[-2] for rel in inputs if "/" in rel}
    return {n for n in names if n.partition(".")[0].isdigit() and n.partition(".")[2]}


def format_summary(summary: TransformSummary, output_dir: Path, most: int = 5) -> str:
    lines = [f"transform: {summary.answered} of {summary.photos} photos answered; outputs in {output_dir}, "
             f"table in {summary.results}"]
    if summary.accuracy is not None:
        lines.append(f"transform: accuracy {100 * summary.accuracy:.1f}% ({summary.correct} of "
                     f"{summary.labelled} photos labelled by their class folder)")
    if summary.predicted:
        lines.append("transform: most predicted: " + ", ".join(
            f"{display_name(c)} {n}" for c, n in summary.predicted.most_common(most)))
    if summary.failed:
        lines.append(f"transform: {len(summary.failed)} photo(s) failed:")
        lines += [f"  {rel}: {why}" for rel, why in sorted(summary.failed.items())[:10]]
        if len(summary.failed) > 10:
            lines.append(f"  ... and {len(summary.failed) - 10} more")
    return "\n".join(lines)

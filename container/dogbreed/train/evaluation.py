"""Per-breed accuracy and the most confused breed pairs of the saved model, with thumbnails.

Written by ``train`` to /opt/ml/output/data/evaluation.json (and examples/*.jpg),
so that a job's output alone is enough for the report.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from dogbreed.contract.artifact import display_name
from dogbreed.contract.jobdir import EVALUATION_FILE, EXAMPLES_DIR
from dogbreed.data.images import ImageError, decode

log = logging.getLogger(__name__)
TOP_PAIRS = 10
THUMBNAILS_PER_PAIR = 2
THUMBNAIL_PX = 112

# One prediction: (image path, true class index, predicted class index).
Prediction = tuple[str, int, int]


def summarize(classes: list[str], predictions: list[Prediction]) -> dict[str, Any]:
    """Accuracy per class and the most frequent (true, predicted) confusions."""
    totals: Counter[int] = Counter()
    correct: Counter[int] = Counter()
    pairs: dict[tuple[int, int], list[str]] = defaultdict(list)
    for path, true, pred in predictions:
        totals[true] += 1
        if true == pred:
            correct[true] += 1
        else:
            pairs[(true, pred)].append(path)
    per_class = [
        {"index": i, "class": c, "breed": display_name(c), "images": totals[i], "correct": correct[i],
         "accuracy": correct[i] / totals[i] if totals[i] else None}
        for i, c in enumerate(classes)
    ]
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:TOP_PAIRS]
    confusions = [
        {"true": classes[t], "predicted": classes[p], "true_breed": display_name(classes[t]),
         "predicted_breed": display_name(classes[p]), "count": len(paths), "paths": sorted(paths)[:5]}
        for (t, p), paths in ranked
    ]
    images = sum(totals.values())
    return {"images": images, "accuracy": sum(correct.values()) / images if images else None,
            "per_class": per_class, "confusions": confusions}


def save_thumbnails(summary: dict[str, Any], split: str, out_dir: Path) -> None:
    """Small JPEGs of the first confused examples, referenced from the summary."""
    folder = out_dir / EXAMPLES_DIR
    for n, pair in enumerate(summary["confusions"][:6]):
        pair["thumbnails"] = []
        for k, path in enumerate(pair["paths"][:THUMBNAILS_PER_PAIR]):
            try:
                img = decode(path, THUMBNAIL_PX)
                img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{split}-{n}-{k}.jpg"
                img.save(folder / name, quality=80)
                pair["thumbnails"].append(f"{EXAMPLES_DIR}/{name}")
            except (ImageError, OSError) as exc:
                log.warning("no thumbnail for %s: %s", path, exc)


def write(out_dir: Path, summaries: dict[str, dict[str, Any]]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, summary in summaries.items():
        save_thumbnails(summary, split, out_dir)
        for pair in summary["confusions"]:
            pair["paths"] = [Path(p).name for p in pair["paths"]]  # no host paths in outputs
    path = out_dir / EVALUATION_FILE
    path.write_text(json.dumps(summaries, indent=1), encoding="utf-8")
    return path

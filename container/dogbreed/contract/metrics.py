"""The metric lines the training program prints, and the regexes that read them.

One line per epoch and one final line, each a list of ``key=value`` pairs:

    epoch=3/10 train_loss=2.1034 train_acc=0.4120 valid_loss=2.3001 valid_acc=0.3850 lr=4.52e-04 \
        epoch_seconds=61.2 images_per_second=135.2      (one line in the log)
    final selected_epoch=3 valid_loss=2.3001 valid_acc=0.3850 test_loss=2.3550 test_acc=0.3712

No key is a substring of another key, so each regex matches only its own key.
The final line repeats the valid metrics of the model that is saved (the best
epoch), so the last ``valid_acc`` in the log, the one SageMaker's tuner uses
as the objective, is that of the model it would deploy.
"""

from __future__ import annotations

import re

NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
# name -> meaning; every one is published in METRIC_DEFINITIONS.
METRICS: dict[str, str] = {
    "train_loss": "mean training loss of the epoch",
    "train_acc": "training accuracy of the epoch (on augmented images)",
    "valid_loss": "validation loss (the training loss function, label smoothing included)",
    "valid_acc": "validation accuracy (the tuning objective)",
    "test_loss": "test loss of the saved model (only with a test channel)",
    "test_acc": "test accuracy of the saved model (only with a test channel)",
    "epoch_seconds": "wall time of the epoch, validation included",
    "images_per_second": "training throughput of the epoch, all processes together",
}
OBJECTIVE_METRIC = "valid_acc"
OBJECTIVE_TYPE = "Maximize"

METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": f"{name}=({NUMBER})"} for name in METRICS
]
_PATTERNS = {d["Name"]: re.compile(d["Regex"]) for d in METRIC_DEFINITIONS}
EPOCH_PATTERN = re.compile(r"(?:^|\s)epoch=([0-9]+)/([0-9]+)\s")
FINAL_PATTERN = re.compile(r"(?:^|\s)final\s")


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def format_epoch(
    epoch: int,
    epochs: int,
    *,
    train_loss: float,
    train_acc: float,
    valid_loss: float,
    valid_acc: float,
    lr: float,
    epoch_seconds: float,
    images_per_second: float,
) -> str:
    return (
        f"epoch={epoch}/{epochs} train_loss={_fmt(train_loss)} train_acc={_fmt(train_acc)} "
        f"valid_loss={_fmt(valid_loss)} valid_acc={_fmt(valid_acc)} lr={lr:.3e} "
        f"epoch_seconds={_fmt(epoch_seconds, 1)} images_per_second={_fmt(images_per_second, 1)}"
    )


def format_final(selected_epoch: int, scores: dict[str, float]) -> str:
    """``scores`` holds valid_loss/valid_acc and, with a test channel, test_loss/test_acc."""
    parts = [f"final selected_epoch={selected_epoch}"]
    for key in ("valid_loss", "valid_acc", "test_loss", "test_acc"):
        if key in scores:
            parts.append(f"{key}={_fmt(scores[key])}")
    return " ".join(parts)


def parse_metrics(line: str) -> dict[str, float]:
    """Every metric the SageMaker regexes find in ``line``."""
    found = {}
    for name, pattern in _PATTERNS.items():
        match = pattern.search(line)
        if match:
            found[name] = float(match.group(1))
    return found


def parse_epoch(line: str) -> tuple[int, dict[str, float]] | None:
    """(epoch, metrics) for a per-epoch line, else None (used by pruning tuners)."""
    match = EPOCH_PATTERN.search(line)
    if not match:
        return None
    return int(match.group(1)), parse_metrics(line)


def is_final(line: str) -> bool:
    return bool(FINAL_PATTERN.search(line))

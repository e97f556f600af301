"""Helpers for tests that run the real programs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
TRAIN = BIN / "train"
# Small and fast: 3 classes at 48 px, CPU.
FAST_HP = {"epochs": "2", "batch_size": "8", "image_size": "48", "pretrained": "false",
           "progress_seconds": "0", "lr": "0.003"}


def run_train(root: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `train` console script on ``root`` as its /opt/ml."""
    return subprocess.run([str(TRAIN)], env={**env, "OPT_ML": str(root)}, capture_output=True,
                          text=True, timeout=timeout)


def failure_reason(root: Path) -> str:
    return (root / "output" / "failure").read_text().splitlines()[0]


def read_metadata(root: Path) -> dict:
    return json.loads((root / "model" / "metadata.json").read_text())

"""How fast `dogctl` answers: start-up of the commands that need no model, against the imports
they avoid, measured in one run.

    .venv/bin/python bench/cli_startup.py [--runs 5]

Lays out a work folder with a prepared dataset and a model artefact (no training), then times,
best of ``--runs``: the bare interpreter, `dogctl --help`, `dogctl summary`, and the peers
`python -c "import torch"` and `python -c "import sagemaker.core.shapes"` (what a `--sagemaker`
verb loads).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dogbreed.contract.artifact import ModelArtifact, ModelMetadata, Preprocessing
from local_test.testdata import make_dataset

BIN = Path(sys.executable).parent


def best_of(runs: int, cmd: list[str]) -> float:
    """The fastest of ``runs`` runs of ``cmd``, in seconds (bench/sdk_footprint.py uses it too)."""
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.monotonic() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        source = make_dataset(Path(tmp) / "src", classes=3, per_class=8, size=32)
        subprocess.run([str(BIN / "dogctl"), "--workdir", str(work), "data", "--source", str(source)],
                       check=True, capture_output=True)
        model = work / "runs" / "train-1" / "opt_ml" / "model"
        model.mkdir(parents=True)
        meta = ModelMetadata("resnet18", 3, Preprocessing.for_size(32), metrics={"selected_epoch": 1})
        ModelArtifact(model, meta, ["001.A", "002.B", "003.C"]).write(b"")
        dogctl = [str(BIN / "dogctl"), "--workdir", str(work)]
        rows = [("python -c pass", [sys.executable, "-c", "pass"]),
                ("dogctl --help", [*dogctl, "--help"]),
                ("dogctl summary", [*dogctl, "summary"]),
                ("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
                ("python -c 'import sagemaker.core.shapes'",
                 [sys.executable, "-c", "import sagemaker.core.shapes"])]
        timed = [(name, best_of(args.runs, cmd)) for name, cmd in rows]
    torch_seconds = dict(timed)["python -c 'import torch'"]
    print(f"command start-up, best of {args.runs} runs; ratio: against importing torch")
    print(f"{'command':<42} {'seconds':>8} {'ratio':>6}")
    for name, seconds in timed:
        print(f"{name:<42} {seconds:>8.2f} {seconds / torch_seconds:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

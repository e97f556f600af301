"""What each SageMaker SDK choice costs dogctl: install time, packages, disk, and the import of
what a `--sagemaker` verb loads, measured in one run against SDK v2 (what dogctl used before).

    .venv/bin/python bench/sdk_footprint.py [--work work/bench-sdk] [--runs 3]

Makes one fresh virtual environment per choice under ``--work`` (needs the package registries),
installs the choice with boto3 (pip's own resolution, no constraints), then times, best of
``--runs`` fresh interpreters, the imports a verb needs. The environments are left for a look
(``rm -rf work/bench-sdk`` removes them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cli_startup import best_of  # noqa: E402

# choice -> (pip requirement, what a --sagemaker verb imports with it)
CHOICES = {
    "v2: sagemaker 2.257.7": ("sagemaker==2.257.7", "import sagemaker.estimator, sagemaker.tuner, "
                              "sagemaker.model, sagemaker.debugger"),
    "v3: sagemaker-core 2.27.0": ("sagemaker-core==2.27.0",
                                  "import sagemaker.core.shapes, sagemaker.core.debugger, botocore.session"),
    "v3: sagemaker 3.27.0 (meta)": ("sagemaker==3.27.0",
                                    "import sagemaker.train.model_trainer, sagemaker.core.shapes"),
}
SHOWN = ("numpy", "protobuf", "pandas", "mlflow", "pydantic")


def megabytes(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def measure(venv: Path, requirement: str, imports: str, runs: int) -> dict[str, object]:
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    started = time.monotonic()
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-cache-dir", requirement, "boto3"],
                   check=True, capture_output=True)  # pip's warnings would bury the table
    installed = time.monotonic() - started
    frozen = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], check=True,
                            capture_output=True, text=True).stdout.split()
    versions = dict(line.split("==", 1) for line in frozen if "==" in line)
    site = next((venv / "lib").glob("python3*/site-packages"))
    return {"install": installed, "packages": len(versions) - 1,  # less pip itself
            "mb": megabytes(site), "import": best_of(runs, [python, "-c", imports]),
            "versions": {name: versions.get(name, "-") for name in SHOWN}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("work") / "bench-sdk")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("PIP_CONSTRAINT", None)
    rows = {name: measure(args.work / f"venv-{i}", requirement, imports, args.runs)
            for i, (name, (requirement, imports)) in enumerate(CHOICES.items())}
    base = rows[next(iter(CHOICES))]
    print(f"SDK footprint, fresh venvs, one run; import: best of {args.runs}; ratio: against v2")
    print(f"{'choice':<30} {'install s':>9} {'packages':>8} {'site MB':>8} {'ratio':>6} "
          f"{'import s':>8} {'ratio':>6}  " + " ".join(SHOWN))
    for name, row in rows.items():
        print(f"{name:<30} {row['install']:>9.1f} {row['packages']:>8} {row['mb']:>8.0f} "
              f"{row['mb'] / base['mb']:>6.2f} {row['import']:>8.2f} {row['import'] / base['import']:>6.2f}  "
              + " ".join(row["versions"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

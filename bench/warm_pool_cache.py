"""What a warm pool's cache folder saves the second job: the real `train`, three times, on the same
photos, each job on its own fresh copy of the channels (as SageMaker downloads them again into a
job on kept instances: new files, new modification times).

    .venv/bin/python bench/warm_pool_cache.py [--data ../shared/data/dogs120-90px.zip]
        [--classes 10] [--image-size 224] [--epochs 3] [--workdir DIR]

1. first job: SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY set, the folder empty (what the first
   job on a warm pool pays: the backbone over every photo, decoding, header checks);
2. second job, the same folder: caches keyed by content, as `train` keys them there;
3. second job with the caches keyed by stats, as a named DOGBREED_FEATURE_CACHE is: the new copies'
   modification times miss every entry, which is what a second job paid before the warm pool's
   folder was used (it kept no cache at all).

finetune=head from a generated stand-in of the ImageNet weights (speed does not depend on them).
Prints one table: wall time of each `train` process, the ratio to the first job, and the cache
lines each logged. Run it on an otherwise idle machine: the ratios are of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local_test.testdata import make_standin_weights, write_opt_ml  # noqa: E402
from orchestration.dataset import load_prepared  # noqa: E402

WARM = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"


def subset(workdir: Path, dest: Path, classes: int) -> Path:
    """The first ``classes`` breeds of the train and valid splits `dogctl data` prepared."""
    channels = load_prepared(workdir).channels
    for split in ("train", "valid"):
        for folder in sorted(p for p in Path(channels[split]).iterdir() if p.is_dir())[:classes]:
            shutil.copytree(folder, dest / split / folder.name)
    return dest


def job(work: Path, name: str, data: Path, hp: dict[str, str], env: dict[str, str]) -> tuple[float, str]:
    """One `train` on a fresh copy of ``data``: (wall seconds, its cache log lines)."""
    root = write_opt_ml(work / name / "opt_ml", data, hp, copy=True)
    now = time.time_ns()
    for path in (root / "input" / "data").rglob("*"):
        os.utime(path, ns=(now, now))  # a fresh download's times
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "dogbreed.train"], capture_output=True, text=True,
                          env={**env, "SAGEMAKER_BASE_DIR": str(root)})
    seconds = time.monotonic() - started
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    lines = [line for line in (done.stdout + done.stderr).splitlines()
             if "cache hit" in line or "cache miss" in line or "decoded once" in line]
    hits = sum("cache hit" in line for line in lines)
    return seconds, f"{hits} hit(s), {len(lines) - hits} miss(es)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dogs120-90px.zip")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, removed after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-warm-pool-") as tmp:
        work = (args.workdir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        ours = ("DOGBREED_", "DOGCTL_", "OPT_ML", "SAGEMAKER_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        weights = work / "resnet18-standin.pth"
        env.update(DOGBREED_WEIGHTS=str(weights), DOGBREED_WEIGHTS_SHA256=make_standin_weights(weights),
                   PYTHONUNBUFFERED="1")
        subprocess.run([sys.executable, "-m", "orchestration.cli", "--workdir", str(work / "dogctl"), "data",
                        "--source", str(args.data)], check=True, capture_output=True, env=env, cwd=ROOT)
        data = subset(work / "dogctl", work / "subset", args.classes)
        count = sum(1 for path in data.rglob("*") if path.is_file())
        hp = {"finetune": "head", "pretrained": "true", "image_size": str(args.image_size),
              "epochs": str(args.epochs), "int8_calibration_images": "0", "debugger": "false"}
        warm = work / "warmpool"
        runs = {
            "first job (empty warm-pool folder)": job(work, "first", data, hp, {**env, WARM: str(warm)}),
            "second job (keyed by content)": job(work, "second", data, hp, {**env, WARM: str(warm)}),
            "second job, caches keyed by stats": job(work, "stats", data, hp,
                                                         {**env, WARM: str(warm),
                                                          "DOGBREED_FEATURE_CACHE": str(warm / "dogbreed")}),
        }
        first = next(iter(runs.values()))[0]
        print(f"{count} photos ({args.classes} breeds, train and valid), finetune=head at "
              f"{args.image_size} px, {args.epochs} epochs, {os.cpu_count()} cores")
        print(f"| {'job':<40} | wall s | vs first | caches |")
        print(f"|{'-' * 42}|-------:|---------:|--------|")
        for name, (seconds, caches) in runs.items():
            print(f"| {name:<40} | {seconds:6.1f} | {seconds / first:7.2f}x | {caches} |")


if __name__ == "__main__":
    main()

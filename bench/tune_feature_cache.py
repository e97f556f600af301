"""Head-only tuning with and without the feature cache: wall time and best valid accuracy.

    .venv/bin/python bench/tune_feature_cache.py [--data ../shared/data/dogs120-90px.zip]
        [--trials 20] [--parallel 2] [--image-size 32] [--seed 0] [--workdir DIR] [--tune-arg ARG ...]

Two studies of the real `dogctl tune --local --runner process` on the same data, search space
(the default one unless --tune-arg adds to it) and sampler seed, finetune=head from pretrained
weights: first with feature_views=0 (the frozen backbone runs at every step of every trial, as
before the cache), then with the default feature_views (its features computed once and shared by
every trial through WORKDIR/feature-cache, empty at the start: its time is in the figure). Without
the ImageNet file the weights are a generated stand-in (local_test.testdata): speed does not depend
on them, accuracy does (a random backbone's features are poor). Prints a table; each study's log
is in WORKDIR/<study>.log.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dogbreed.hyperparameters import DEFAULTS
from local_test.testdata import make_standin_weights

ROOT = Path(__file__).resolve().parent.parent


def dogctl(workdir: Path, args: list[str], env: dict[str, str], log: Path | None = None) -> float:
    """Run dogctl; its seconds. Output to ``log`` (or discarded); fails loudly."""
    started = time.monotonic()
    with open(log or os.devnull, "w") as out:
        done = subprocess.run([sys.executable, "-m", "orchestration.cli", "--workdir", str(workdir), *args],
                              env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"dogctl {' '.join(args)} failed ({done.returncode}); see {log}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dogs120-90px.zip")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, removed after")
    parser.add_argument("--tune-arg", action="append", default=[],
                        help="an extra `dogctl tune` argument, e.g. --tune-arg=--hp=augment=false")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-feature-cache-") as tmp:
        work = (args.workdir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOGBREED_", "DOGCTL_", "OPT_ML"))}
        weights = work / "resnet18-standin.pth"
        sha = make_standin_weights(weights)
        env.update(DOGBREED_WEIGHTS=str(weights), DOGBREED_WEIGHTS_SHA256=sha, PYTHONUNBUFFERED="1")
        dogctl(work, ["data", "--source", str(args.data)], env)
        common = ["tune", "--runner", "process", "--trials", str(args.trials),
                  "--parallel", str(args.parallel), "--seed", str(args.seed),
                  "--hp", "pretrained=true", "--hp", "finetune=head",
                  "--hp", f"image_size={args.image_size}", *args.tune_arg]
        rows = []
        for study, views in (("every-step", 0), ("cached", DEFAULTS["feature_views"])):
            if views:
                subprocess.run(["rm", "-rf", str(work / "feature-cache")], check=True)
            seconds = dogctl(work, [*common, "--name", study, "--hp", f"feature_views={views}"], env,
                             work / f"{study}.log")
            summary = json.loads((work / "tuning" / study / "tuning.json").read_text())
            statuses = [t["status"] for t in summary["trials"]]
            rows.append((study, views, seconds, summary["best"]["objective"], statuses.count("complete"),
                         statuses.count("pruned"), summary["best"]["hyperparameters"]))
        tuned = " ".join(a for a in args.tune_arg) or "the default search space"
        print(f"dogctl tune --local --runner process: {args.trials} trials, {args.parallel} in parallel, "
              f"seed {args.seed}, finetune=head, image_size={args.image_size}, {tuned}; "
              f"data {args.data.name}; {os.cpu_count()} CPU core(s)")
        print(f"{'backbone features':<26} {'feature_views':>13} {'trials done/pruned':>18} {'wall time':>10} "
              f"{'best valid_acc':>14}")
        for study, views, seconds, best, done, pruned, _ in rows:
            what = "at every step" if study == "every-step" else "cached, computed once"
            print(f"{what:<26} {views:>13} {f'{done}/{pruned}':>18} {seconds:>9.0f}s {best:>14.4f}")
        ratio = rows[0][2] / rows[1][2]
        print(f"wall time ratio: {ratio:.1f}x less with the cache; best valid_acc "
              f"{rows[1][3] - rows[0][3]:+.4f} with it")
        for study, *_, best in rows:
            print(f"best trial of {study}: " + " ".join(f"{k}={v}" for k, v in sorted(best.items())))


if __name__ == "__main__":
    main()

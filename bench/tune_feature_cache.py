"""Head-only tuning with and without the feature cache: wall time and best valid accuracy.

    .venv/bin/python bench/tune_feature_cache.py [--data ../shared/data/dogs120-90px.zip]
        [--trials 20] [--parallel 2] [--image-size 32] [--seed 0] [--workdir DIR] [--tune-arg ARG ...]
        [--no-retrain]

Two studies of the real `dogctl tune --local --runner process` on the same data, search space
(the default one unless --tune-arg adds to it) and sampler seed, finetune=head from pretrained
weights: first with feature_views=0 (the frozen backbone runs at every step of every trial, as
before the cache), then with the default feature_views (its features computed once and shared by
every trial through WORKDIR/feature-cache, empty at the start: its time is in the figure). Then
each study's best hyperparameters are trained once more both ways, to compare accuracy at the same
points (parallel TPE searches are not reproducible: the two studies visit different points). The
weights are a generated stand-in (local_test.testdata): speed does not depend on them, accuracy
does (a random backbone's features are poor, valid_acc is a few percent). Prints a table with wall
time, CPU time and the mean load average (other work on the machine slows the studies); each
study's log is in WORKDIR/<study>.log.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dogbreed.contract.hyperparameters import DEFAULTS
from local_test.testdata import make_standin_weights

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    seconds: float  # wall time
    cpu_seconds: float  # user + system time of dogctl and every `train` it ran
    load: float  # mean 1-minute load average while it ran (2 = this machine's cores busy)


def dogctl(workdir: Path, args: list[str], env: dict[str, str], log: Path | None = None) -> Run:
    """Run dogctl, output to ``log`` (or discarded); fails loudly."""
    loads: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(5):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with open(log or os.devnull, "w") as out:
        done = subprocess.run([sys.executable, "-m", "orchestration.cli", "--workdir", str(workdir), *args],
                              env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    if done.returncode:
        raise SystemExit(f"dogctl {' '.join(args)} failed ({done.returncode}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, cpu, sum(loads) / len(loads) if loads else os.getloadavg()[0])


def drop_weights(opt_ml: Path) -> None:
    """A run's checkpoints and model weights (over 100 MB a run): only its figures are read."""
    shutil.rmtree(opt_ml / "checkpoints", ignore_errors=True)
    (opt_ml / "model" / "model.pt").unlink(missing_ok=True)


def valid_acc(workdir: Path, name: str, best: Path, views: int, env: dict[str, str]) -> float:
    """valid_acc of one `train` run of the hyperparameters in ``best`` with ``feature_views``."""
    dogctl(workdir, ["train", "--runner", "process", "--no-debugger", "--name", name,
                     "--hyperparameters", str(best), "--hp", f"feature_views={views}"], env)
    opt_ml = workdir / "runs" / name / "opt_ml"
    drop_weights(opt_ml)
    return float(json.loads((opt_ml / "model" / "metadata.json").read_text())["metrics"]["valid_acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dogs120-90px.zip")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, removed after")
    parser.add_argument("--no-retrain", dest="retrain", action="store_false",
                        help="skip training each study's best again both ways")
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
        studies = {"every-step": 0, "cached": DEFAULTS["feature_views"]}
        runs, summaries = {}, {}
        for study, views in studies.items():
            shutil.rmtree(work / "feature-cache", ignore_errors=True)  # the cached study starts cold
            runs[study] = dogctl(work, [*common, "--name", study, "--hp", f"feature_views={views}"], env,
                                 work / f"{study}.log")
            summaries[study] = json.loads((work / "tuning" / study / "tuning.json").read_text())
            for opt_ml in (work / "tuning" / study).glob("trial-*/opt_ml"):
                drop_weights(opt_ml)
        # Each study's best hyperparameters trained once more both ways: the two studies' TPE
        # searches (parallel, hence not reproducible) visit different points; this compares the
        # cache at the same points.
        again = {(study, other): valid_acc(work, f"{study}-best-{other}",
                                           Path(summaries[study]["best_file"]), views, env)
                 for study in studies for other, views in studies.items()} if args.retrain else {}

        tuned = " ".join(args.tune_arg) or "the default search space"
        print(f"dogctl tune --local --runner process: {args.trials} trials, {args.parallel} in parallel, "
              f"seed {args.seed}, finetune=head, image_size={args.image_size}, {tuned}; "
              f"data {args.data.name}; {os.cpu_count()} CPU core(s)")
        print(f"{'backbone features':<24} {'feature_views':>13} {'done/pruned':>11} {'wall time':>9} "
              f"{'CPU time':>9} {'mean load':>9} {'best valid_acc':>14}")
        for study, views in studies.items():
            run, summary = runs[study], summaries[study]
            statuses = [t["status"] for t in summary["trials"]]
            done = f"{statuses.count('complete')}/{statuses.count('pruned')}"
            what = "at every step" if views == 0 else "cached, computed once"
            print(f"{what:<24} {views:>13} {done:>11} {run.seconds:>8.0f}s {run.cpu_seconds:>8.0f}s "
                  f"{run.load:>9.1f} {summary['best']['objective']:>14.4f}")
        slow, fast = runs["every-step"], runs["cached"]
        print(f"ratio: {slow.seconds / fast.seconds:.1f}x less wall time, "
              f"{slow.cpu_seconds / fast.cpu_seconds:.1f}x less CPU time with the cache")
        if not again:
            return
        print("valid_acc of each study's best hyperparameters, trained again (one process, all cores):")
        print(f"{'best of':<12} {'at every step':>13} {'cached':>8}  hyperparameters")
        for study in studies:
            best = summaries[study]["best"]["hyperparameters"]
            tuned_values = " ".join(f"{k}={v}" for k, v in sorted(best.items()) if k != "feature_views")
            print(f"{study:<12} {again[study, 'every-step']:>13.4f} {again[study, 'cached']:>8.4f}  "
                  f"{tuned_values}")


if __name__ == "__main__":
    main()

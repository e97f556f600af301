"""``make demo``: the product's main job on this machine, in one command.

    python -m orchestration.demo [--workdir work] [--data ZIP|FOLDER|URL] [--photos PHOTO ...]

With ImageNet weights (fetched once into WORKDIR/weights, or found where ``train`` looks) it runs the
first reference write-up's workflow the way this product makes cheap: the backbone frozen, its
features computed once at 224 px and cached, a tuning study over lr, eps, weight_decay and
batch_size on those features, the best trained, deployed and queried. Without them it says why in
one line and trains from random weights at small sizes (far lower accuracy). The summary says which
ran, the accuracy, where the report is, and what to run next.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from dogbreed.errors import UserError

from . import cli, dataset

# The two workflows, as dogctl's --hp words.
PRETRAINED_TUNE = ["--tune", "lr,eps,weight_decay,batch_size", "--hp", "pretrained=true",
                   "--hp", "finetune=head", "--hp", "feature_views=1", "--hp", "augment=false",
                   "--hp", "image_size=224", "--hp", "epochs=4"]
PRETRAINED_HP = ["pretrained=true", "finetune=head", "feature_views=1", "augment=false", "image_size=224",
                 "epochs=8"]
SCRATCH_TUNE = ["--tune", "lr,weight_decay", "--hp", "pretrained=false", "--hp", "epochs=1",
                "--hp", "image_size=32", "--hp", "batch_size=64", "--hp", "label_smoothing=0.1"]
SCRATCH_HP = ["pretrained=false", "epochs=3", "image_size=64", "batch_size=64", "label_smoothing=0.1"]
SCRATCH_NOTE = ("from random weights at 64 px: expect a test accuracy of a few percent on 120 breeds "
                "(ImageNet weights give far more)")


@dataclass
class Weights:
    path: Path | None
    why_not: str = ""


def find_weights(workdir: Path, url: str) -> Weights:
    """The ImageNet weights: where ``train`` finds them, else downloaded once into WORKDIR/weights."""
    from dogbreed.model import weights

    try:
        found = weights.locate()
        weights.verify(found)
        return Weights(found)
    except (OSError, weights.WeightsError):
        pass
    try:
        return Weights(weights.download(workdir / "weights", url))
    except (OSError, weights.WeightsError) as exc:  # no network, a refused or damaged download
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Weights(None, f"the ImageNet weights could not be fetched from {url} ({reason})")


def sample_photos(workdir: Path, given: list[Path], count: int = 3) -> list[Path]:
    """The photos to send: those given, else the first of a few classes of the test split."""
    if given:
        return given
    prepared = dataset.load_prepared(workdir)
    split = prepared.channels.get("test") or prepared.channels["valid"]
    photos = []
    for class_dir in sorted(p for p in split.iterdir() if p.is_dir())[:count]:
        photos += sorted(p for p in class_dir.iterdir() if p.is_file())[:1]
    return photos


def dogctl(workdir: Path, *args: str) -> None:
    """One dogctl verb, as the user would type it; a failure stops the demo with its code."""
    print(f"\n$ dogctl --workdir {workdir} {' '.join(args)}", flush=True)
    code = cli.main(["--workdir", str(workdir), *args])
    if code:
        raise SystemExit(code)


def run(args: argparse.Namespace) -> int:
    work = args.workdir
    dogctl(work, "data", *(["--source", args.data] if args.data else []))
    weights = Weights(None, "--scratch was given") if args.scratch else find_weights(work, args.weights_url)
    if weights.path:
        os.environ.setdefault("DOGBREED_WEIGHTS", str(weights.path))  # for `train`, a process here
        mode, tune, hp, runner = "pretrained", PRETRAINED_TUNE, PRETRAINED_HP, ["--runner", "process"]
        print(f"\ndemo: ImageNet weights {weights.path}: fine-tuning the final layer on the frozen "
              "backbone's cached 224 px features", flush=True)
    else:
        mode, tune, hp, runner = "from scratch", SCRATCH_TUNE, SCRATCH_HP, ["--local-image", args.image]
        print(f"\ndemo: {weights.why_not}; training {SCRATCH_NOTE}", flush=True)
    extra = [word for item in args.hp for word in ("--hp", item)]
    if args.trials:
        dogctl(work, "tune", "--name", "demo", "--trials", str(args.trials), "--parallel", "2",
               *runner, *tune, *extra)
        best = ["--hyperparameters", str(work / "tuning" / "demo" / "best-hyperparameters.json")]
    else:
        best = ["--hp", "lr=0.002"]
    dogctl(work, "train", *runner, *[w for item in hp for w in ("--hp", item)], *best, *extra)
    dogctl(work, "deploy", "--port", str(args.port))
    try:
        photos = sample_photos(work, args.photos)
        print(f"\ndemo: sending {len(photos)} photo(s): {', '.join(p.name for p in photos)}")
        dogctl(work, "invoke", *map(str, photos))
        dogctl(work, "evaluate")
    finally:
        dogctl(work, "teardown")
    dogctl(work, "summary")
    return finish(work, mode)


def finish(work: Path, mode: str) -> int:
    """The demo's last lines: which workflow ran, its accuracy, the report, the next command."""
    from dogbreed.contract.jobdir import REPORT_FILE, JobDir

    from .local.hosting import newest_model

    job = JobDir.find(newest_model(work).parent)
    scores = job.artifact().metadata.scores
    accuracy = scores.get("test_acc", scores.get("valid_acc", 0.0))
    report = job.output_data / REPORT_FILE
    print(f"\ndemo: done ({mode}): test accuracy {100 * accuracy:.1f}%")
    if report.is_file():
        print(f"demo: report {report} (open it in a browser: xdg-open {report})")
    print("demo: next: your own photos with `make demo DATA=/path/to/folder-of-class-folders`, "
          "or SageMaker: README.md, 'SageMaker quick start'")
    return 0


def main(argv: list[str] | None = None) -> int:
    from dogbreed.model.weights import URL

    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--data", help="zip, folder or URL (default: dogctl data's)")
    parser.add_argument("--photos", type=Path, nargs="*", default=[],
                        help="photos to send (default: a few of the test split)")
    parser.add_argument("--trials", type=int, default=4, help="tuning trials (0: none; default 4)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="a hyperparameter over the workflow's own (repeatable)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--image", default="dogbreed:latest", help="the image to train in, when built")
    parser.add_argument("--weights-url", default=URL, help="where the ImageNet weights come from")
    parser.add_argument("--scratch", action="store_true", help="train from random weights")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

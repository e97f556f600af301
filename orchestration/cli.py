"""``dogctl``: the workflow of the reference write-ups as one command-line tool.

    dogctl data  [--source ZIP|FOLDER|URL]        fetch, extract and check the dataset
    dogctl train --local [--hp NAME=VALUE ...]    train with the real `train` program
    dogctl report RUN_DIR                         the HTML report of a job (rules included)

Every command prints progress, and a one-line error instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dogbreed.debugger import TENSORS_DIR, hook_config
from dogbreed.hyperparameters import HyperparameterError, parse
from dogbreed.jobdir import JobDirError
from dogbreed.report import REPORT_FILE

from . import dataset, local

DEFAULT_WORKDIR = Path("work")
DEBUG_SAVES = 8  # full tensor saves after the first ten steps, in a local run


class UsageError(Exception):
    """Wrong use of a command; the message says what to do."""


def _parse_assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--hp takes NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def hyperparameters_from(args: argparse.Namespace) -> dict[str, str]:
    """--hyperparameters FILE (e.g. a tuning job's best) overlaid with --hp NAME=VALUE, checked."""
    values: dict[str, str] = {}
    if getattr(args, "hyperparameters", None):
        path = Path(args.hyperparameters)
        try:
            loaded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read hyperparameters from {path}: {exc}") from exc
        values.update({k: str(v) for k, v in loaded.items()})
    values.update(_parse_assignments(args.hp or []))
    parse(values)  # fail now, not minutes later inside the job
    return values


def cmd_data(args: argparse.Namespace) -> int:
    source = args.source or dataset.DOGIMAGES_URL
    print(f"data: preparing {source}", flush=True)
    prepared = dataset.prepare(source, args.workdir, test_fraction=args.test_from_valid)
    print(f"data: {prepared.classes} classes")
    for split, path in prepared.channels.items():
        skipped = prepared.skipped.get(split, 0)
        note = f" ({skipped} unusable file(s) skipped)" if skipped else ""
        print(f"  {split:<5} {prepared.counts[split]:>6} images  {path}{note}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    hyperparameters = hyperparameters_from(args)
    prepared = dataset.load_prepared(args.workdir)
    run_dir = local.new_run_dir(args.workdir, "train", args.name)
    print(f"train: local run in {run_dir} on {prepared.name} "
          f"({prepared.counts['train']} training images)", flush=True)
    debug_hook = None
    if args.debugger:
        params = parse(hyperparameters)
        steps = params.epochs * -(-prepared.counts["train"] // params.batch_size)
        interval = args.debug_interval or max(1, steps // DEBUG_SAVES)
        debug_hook = hook_config(run_dir.resolve() / "opt_ml" / "output" / TENSORS_DIR, interval)
        print(f"train: debugger on: tensors at steps 0-9 and every {interval} steps "
              f"(of {steps}), losses at every step", flush=True)
    result = local.run_training(run_dir, prepared.channels, hyperparameters, debug_hook=debug_hook)
    if not result.ok:
        print(f"train: failed after {result.seconds:.0f}s: {result.failure()}", file=sys.stderr)
        print(f"train: full log in {run_dir / 'train.log'}", file=sys.stderr)
        return 1
    scores = result.metadata()["metrics"]
    summary = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != "selected_epoch")
    print(f"train: done in {result.seconds:.0f}s; epoch {scores['selected_epoch']} kept: {summary}")
    print(f"train: model in {result.opt_ml.model_dir}")
    report = result.opt_ml.output_data_dir / REPORT_FILE
    if report.is_file():
        print(f"train: report in {report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dogbreed.jobdir import JobDir
    from dogbreed.report import write_report
    from dogbreed.rules import load_verdicts

    path = write_report(args.job, out=args.out, evaluate=args.rules)
    for r in load_verdicts(JobDir.find(args.job)) or []:
        print(f"  {r.rule:<25} {r.verdict:<16} {r.summary}")
    print(f"report: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dogctl", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="where data, runs and state are kept (default: ./work)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="fetch, extract and check the dataset")
    p.add_argument("--source", help=f"zip file, folder or URL (default: {dataset.DOGIMAGES_URL})")
    p.add_argument("--test-from-valid", type=float, default=0.5, metavar="FRACTION",
                   help="if the dataset has no test split, move this fraction of each valid "
                        "class into one (default 0.5; 0: none)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a model")
    p.add_argument("--local", action="store_true", default=True,
                   help="run on this machine (the only backend so far)")
    p.add_argument("--hp", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter (repeatable); see `dogbreed hyperparameters`")
    p.add_argument("--hyperparameters", metavar="FILE", help="JSON file of hyperparameters")
    p.add_argument("--name", help="run name (default: train-<timestamp>)")
    p.add_argument("--no-debugger", dest="debugger", action="store_false",
                   help="no Debugger hook (no tensors saved, no rules, no report at the end)")
    p.add_argument("--debug-interval", type=int, metavar="STEPS",
                   help=f"save weights and gradients every STEPS training steps "
                        f"(default: about {DEBUG_SAVES} times in the run)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("report", help="write the HTML report of a job folder")
    p.add_argument("job", type=Path, metavar="RUN_DIR",
                   help="a run folder, its opt_ml folder, or a SageMaker job's downloaded output")
    p.add_argument("--rules", action="store_true",
                   help="evaluate the Debugger rules again (default: the saved verdicts)")
    p.add_argument("--out", type=Path, help="where to write (default: the job's output/data/report.html)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, HyperparameterError, dataset.DatasetError, JobDirError) as exc:
        print(f"dogctl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dogctl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``dogctl``: the workflow of the reference write-ups as one command-line tool.

    dogctl data  [--source ZIP|FOLDER|URL]        fetch, extract and check the dataset
    dogctl train --local [--hp NAME=VALUE ...]    train with the real `train` program

Every command prints progress, and a one-line error instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dogbreed.hyperparameters import HyperparameterError, parse

from . import dataset, local

DEFAULT_WORKDIR = Path("work")


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
    result = local.run_training(run_dir, prepared.channels, hyperparameters)
    if not result.ok:
        print(f"train: failed after {result.seconds:.0f}s: {result.failure()}", file=sys.stderr)
        print(f"train: full log in {run_dir / 'train.log'}", file=sys.stderr)
        return 1
    scores = result.metadata()["metrics"]
    summary = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != "selected_epoch")
    print(f"train: done in {result.seconds:.0f}s; epoch {scores['selected_epoch']} kept: {summary}")
    print(f"train: model in {result.opt_ml.model_dir}")
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
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, HyperparameterError, dataset.DatasetError) as exc:
        print(f"dogctl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dogctl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

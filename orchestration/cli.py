"""``dogctl``: the verbs' code; the command line itself is :mod:`orchestration.parser`.

Every command prints progress, and a one-line error instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dogbreed.contract.hyperparameters import parse
from dogbreed.errors import UserError

from . import dataset, interrupts
from .parser import build_parser
from .progress import Progress
from .tuning import TuningSetup, parse_range, trials_table

if TYPE_CHECKING:
    from .local import LocalBackend
    from .sagemaker import SageMakerBackend

    Backend = LocalBackend | SageMakerBackend



def backend(args: argparse.Namespace) -> Backend:
    """The one place that chooses where a command runs: SageMaker with --sagemaker, else here."""
    if getattr(args, "sagemaker", False):
        from .sagemaker import SageMakerBackend

        return SageMakerBackend(args)
    from .local import LocalBackend

    return LocalBackend(args)


def _parse_assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--hp takes NAME=VALUE, got {item!r}")
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
            raise UserError(f"cannot read hyperparameters from {path}: {exc}") from exc
        values.update({k: str(v) for k, v in loaded.items()})
    values.update(_parse_assignments(args.hp or []))
    parse(values)  # fail now, not minutes later inside the job
    return values


def cmd_data(args: argparse.Namespace) -> int:
    source = args.source or dataset.DOGIMAGES_URL
    print(f"data: preparing {source}", flush=True)
    prepared = dataset.prepare(source, args.workdir, test_fraction=args.test_from_valid,
                               fractions=(args.valid_fraction, args.test_fraction))
    print(f"data: {prepared.classes} classes")
    for split, path in prepared.channels.items():
        skipped = prepared.skipped.get(split, 0)
        note = f" ({skipped} unusable file(s) skipped)" if skipped else ""
        print(f"  {split:<5} {prepared.counts[split]:>6} images  {path}{note}")
    return backend(args).data(args, prepared)


def cmd_train(args: argparse.Namespace) -> int:
    return backend(args).train(args, hyperparameters_from(args))


def cmd_tune(args: argparse.Namespace) -> int:
    fixed = hyperparameters_from(args)
    ranges = tuple(parse_range(r) for r in args.range or [])
    tuned = tuple(n.strip() for n in args.tune.split(",") if n.strip())
    chosen = backend(args)
    if args.name:
        name = args.name
    elif args.sagemaker:
        from .sagemaker import job_name

        name = job_name("dogbreed-tune")
    else:
        name = "tune"
    setup = TuningSetup(name, args.trials, args.parallel, tuned, tuple(fixed.items()), args.seed, ranges)
    setup.space()  # checks the names before anything starts
    summary = chosen.tune(args, setup)
    if summary is None:  # submitted, not waited for
        return 0
    print(f"tune: {summary['headline']}")
    print(trials_table(summary, list(setup.space())))
    if not summary["best"]:
        print("tune: no trial completed", file=sys.stderr)
        return 1
    print(f"tune: best {summary['best']['name']} valid_acc={summary['best']['objective']:.4f}; "
          f"hyperparameters in {summary['best_file']}")
    print(f"tune: next: dogctl train --hyperparameters {summary['best_file']}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    return backend(args).stop(args)


def cmd_report(args: argparse.Namespace) -> int:
    from dogbreed.contract.jobdir import JobDir
    from dogbreed.debugger.report import write_report
    from dogbreed.debugger.verdicts import load_verdicts, verdict_lines

    path = write_report(args.job, out=args.out, evaluate=args.rules)
    for line in verdict_lines(load_verdicts(JobDir.find(args.job)) or []):
        print(line)
    print(f"report: {path}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    return backend(args).deploy(args)


def cmd_invoke(args: argparse.Namespace) -> int:
    from .invocation import invoke

    for photo in args.photos:
        if not photo.is_file():
            raise UserError(f"{photo}: no such file")
    send, _, _ = backend(args).sender(args)
    for photo in args.photos:
        top = invoke(send, photo, args.top_k)
        print(f"{photo}: " + ", ".join(f"{p['breed']} {100 * p['probability']:.1f}%" for p in top))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .invocation import evaluate, format_evaluation

    split_dir = args.data or dataset.load_prepared(args.workdir).channels.get(args.split)
    if split_dir is None:
        raise UserError(f"the prepared dataset has no {args.split!r} split: pass --data FOLDER")
    send, where, classes = backend(args).sender(args)
    print(f"evaluate: {split_dir} through {where}", flush=True)
    with Progress("evaluate", None, unit="images", stream=sys.stdout) as bar:
        result = evaluate(send, Path(split_dir), classes, bar.advance_to)
    print(format_evaluation(result))
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    return backend(args).transform(args)


def cmd_teardown(args: argparse.Namespace) -> int:
    return backend(args).teardown(args)


def cmd_summary(args: argparse.Namespace) -> int:
    """What the local workflow has produced so far, in a few lines (the end of `make demo`)."""
    from dogbreed.contract.jobdir import REPORT_FILE, TUNING_FILE, JobDir

    from .local.hosting import newest_model
    from .tuning import BEST_FILE

    prepared = dataset.load_prepared(args.workdir)
    counts = ", ".join(f"{split} {n}" for split, n in prepared.counts.items())
    print(f"summary: data {prepared.name}: {prepared.classes} classes; {counts} images")
    for study in sorted((args.workdir / "tuning").glob(f"*/{TUNING_FILE}")):
        tuned = json.loads(study.read_text())
        best = tuned.get("best") or {}
        line = f"summary: tuning {tuned['study']!r}: {len(tuned['trials'])} trials"
        if best:
            line += f"; best {best['name']} valid_acc {best['objective']:.4f} ({study.with_name(BEST_FILE)})"
        print(line)
    job = JobDir.find(newest_model(args.workdir).parent)
    meta = job.artifact().metadata
    scores = ", ".join(f"{k} {v:.4f}" for k, v in meta.scores.items())
    print(f"summary: model {job.model} (epoch {meta.selected_epoch}): {scores}")
    report = job.output_data / REPORT_FILE
    if report.is_file():
        print(f"summary: report {report}")
    return 0


class Terminated(BaseException):
    """SIGTERM: stop as Ctrl-C does (what the command started is stopped, checkpoints kept)."""


def _on_signal(signum: int, frame: object) -> None:
    interrupts.interrupt_all()  # what was started stops (trials in threads do not see the signal)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


COMMANDS = {"data": cmd_data, "train": cmd_train, "tune": cmd_tune, "stop": cmd_stop, "report": cmd_report,
            "deploy": cmd_deploy, "invoke": cmd_invoke, "evaluate": cmd_evaluate, "transform": cmd_transform,
            "teardown": cmd_teardown, "summary": cmd_summary}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when ignored (nohup, &)
        signal.signal(signal.SIGINT, _on_signal)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"dogctl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dogctl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"dogctl {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())

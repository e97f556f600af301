"""``dogctl``: each verb's options made a typed request to the chosen backend
(:mod:`orchestration.backend`), its result printed, its exit code returned. The command line
itself is :mod:`orchestration.parser`.

Every command prints progress, and a one-line error instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from dogbreed.contract.hyperparameters import RESERVED_PREFIXES, parse
from dogbreed.errors import UserError

from . import dataset, interrupts
from .backend import (
    Backend,
    DataRequest,
    DeployRequest,
    DeployResult,
    EndpointRequest,
    StopRequest,
    StopResult,
    TeardownResult,
    TrainRequest,
    TrainResult,
    TransformRequest,
    TransformResult,
    TuneRequest,
    TuneResult,
)
from .operations import cmd_init, cmd_register, cmd_resources, cmd_review
from .parser import build_parser
from .progress import Progress
from .tuning import TuningSetup, parse_range, trials_table

__all__ = ["COMMANDS", "build_parser", "choose_backend", "main"]


def choose_backend(args: argparse.Namespace) -> Backend:
    """The one place that chooses where a command runs: SageMaker with --sagemaker, else here."""
    if getattr(args, "sagemaker", False):
        from .sagemaker import SageMakerBackend, Settings

        names = ("bucket", "prefix", "region", "role", "image")
        options = {name: getattr(args, name, None) for name in names}
        options["train_instance_type"] = getattr(args, "instance_type", None)
        options["tags"] = dict(getattr(args, "tag", None) or [])
        return SageMakerBackend(args.workdir, Settings.load(options, getattr(args, "config", None)))
    from .local import LocalBackend

    where = {k: getattr(args, k) for k in ("runner", "local_image") if hasattr(args, k)}  # train, tune
    return LocalBackend(args.workdir, **where)


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
    reserved = sorted(k for k in values if k.startswith(RESERVED_PREFIXES))
    if reserved:  # sagemaker_program would hand the job over to any script path
        raise UserError(f"{', '.join(reserved)}: SageMaker's own keys (starting with "
                        f"{' or '.join(RESERVED_PREFIXES)}), not this trainer's hyperparameters; to run "
                        "your own script, start a training job that names it (README: Bringing your "
                        "own training script)")
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
    result = choose_backend(args).data(DataRequest(prepared.channels))
    for split, up in result.uploads.items():
        print(f"data: {split} -> {up.uri} ({up.uploaded} uploaded, {up.unchanged} unchanged)")
    if result.uploads:
        print("data: channels: " + json.dumps(dict(result.channels)))
    return 0


def train_request(args: argparse.Namespace) -> TrainRequest:
    """`dogctl train`'s options as the request a backend takes (the hyperparameters checked)."""
    return TrainRequest(hyperparameters_from(args), name=args.name,
                        hyperparameters_file=Path(args.hyperparameters) if args.hyperparameters else None,
                        debugger=args.debugger, debug_interval=args.debug_interval, spot=args.spot,
                        keep_alive=args.keep_alive, wait=args.wait, attach=args.attach)


def cmd_train(args: argparse.Namespace) -> int:
    chosen = choose_backend(args)
    return print_train(chosen.train(train_request(args)))


def print_train(result: TrainResult) -> int:
    if not result.waited:
        print(f"train: not waiting; `dogctl train --sagemaker --attach {result.job}` follows it to the end")
        return 0
    if result.status is not None:  # a SageMaker job
        return _print_training_job(result)
    if not result.ok:
        print(f"train: failed after {result.seconds:.0f}s: {result.failure}", file=sys.stderr)
        print(f"train: full log in {result.log}", file=sys.stderr)
        return 1
    scores = ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
    print(f"train: done in {result.seconds:.0f}s; epoch {result.selected_epoch} kept: {scores}")
    print(f"train: model in {result.model_dir}")
    if result.report:
        print(f"train: report in {result.report}")
    return 0


def _print_training_job(result: TrainResult) -> int:
    from dogbreed.debugger.verdicts import verdict_lines

    print(f"train: job {result.job} {result.status}" + (f": {result.failure}" if result.failure else ""))
    if result.metrics:
        print("train: final metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.metrics.items())))
    if result.rules:
        print("train: SageMaker Debugger's rule verdicts:")
    for rule in result.rules:
        print(f"  {rule.name:<28} {rule.status:<14} {rule.details}".rstrip())
    for part, uri in result.downloads.items():
        print(f"  {part:<16} {uri}")
    if result.report:
        print(f"train: report in {result.report}")
    print(f"train: outputs in {result.outputs}")
    if not result.verdicts:
        print("train: rule verdicts from the job: none (the debugger was off, or the job wrote no model)")
    else:
        print("train: rule verdicts from the job:")
        for line in verdict_lines(list(result.verdicts)):
            print(line)
    return 0 if result.ok else 1


def cmd_tune(args: argparse.Namespace) -> int:
    fixed = hyperparameters_from(args)
    ranges = tuple(parse_range(r) for r in args.range or [])
    tuned = tuple(n.strip() for n in args.tune.split(",") if n.strip())
    chosen = choose_backend(args)
    setup = TuningSetup(args.name or "", args.trials, args.parallel, tuned, tuple(fixed.items()), args.seed,
                        ranges)
    setup.space()  # checks the names before anything starts
    result = chosen.tune(TuneRequest(setup, wait=args.wait, attach=args.attach, keep_alive=args.keep_alive))
    return print_tune(result, list(setup.space()))


def print_tune(result: TuneResult, space_names: list[str]) -> int:
    if not result.waited:
        print(f"tune: not waiting; `dogctl tune --sagemaker --attach {result.name}` waits and writes "
              "the results")
        return 0
    print(f"tune: {result.headline}")
    print(trials_table(result.trials, result.objective, space_names))
    if not result.best:
        print("tune: no trial completed", file=sys.stderr)
        return 1
    print(f"tune: best {result.best['name']} valid_acc={result.best['objective']:.4f}; "
          f"hyperparameters in {result.best_file}")
    print(f"tune: next: dogctl train --hyperparameters {result.best_file}")
    return 0


STOPPED = {  # StopResult.state -> what stop says
    "gone": "{job!r} was not running any more (its dogctl, pid {pid}, is gone)",
    "stopped": "{job!r} stopped; its checkpoints are kept (the same command resumes it)",
    "stopping": "{kind} {job!r}: stopping (SageMaker sends SIGTERM; the checkpoints stay in S3)",
    "ended": "{kind} {job!r}: already {status}; nothing to stop",
}


def cmd_stop(args: argparse.Namespace) -> int:
    return print_stop(choose_backend(args).stop(StopRequest(args.job)))


def print_stop(result: StopResult) -> int:
    print("stop: " + STOPPED[result.state].format(job=result.job, pid=result.pid, kind=result.kind,
                                                  status=result.status))
    return 0


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
    request = DeployRequest(
        args.name, model=args.model, port=args.port, workers=args.workers, environment=dict(args.env),
        job=args.job, model_data=args.model_data, instance_type=args.instance_type,
        instance_count=args.instance_count, ami_version=args.ami_version,
        serverless_memory=args.serverless_memory, use_async=args.use_async,
        max_concurrency=args.max_concurrency, capture_percent=args.capture_percent, package=args.package,
        group=args.group, autoscale=args.autoscale,
        target_invocations=args.target_invocations, target_backlog=args.target_backlog)
    result: DeployResult = choose_backend(args).deploy(request)
    if result.url:  # a local endpoint
        print(f"deploy: endpoint {result.name!r} ready at {result.url} (log {result.log}); "
              "`dogctl teardown` stops it")
    else:
        print(f"deploy: endpoint {result.name!r} in service; `dogctl invoke --sagemaker PHOTO` to use it, "
              f"`dogctl teardown --sagemaker` to stop paying for it")
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from .invocation import invoke

    for photo in args.photos:
        if not photo.is_file():
            raise UserError(f"{photo}: no such file")
    sender = choose_backend(args).sender(EndpointRequest(args.name))
    for photo in args.photos:
        top = invoke(sender.send, photo, args.top_k)
        print(f"{photo}: " + ", ".join(f"{p['breed']} {100 * p['probability']:.1f}%" for p in top))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .invocation import evaluate, format_evaluation

    split_dir = args.data or dataset.load_prepared(args.workdir).channels.get(args.split)
    if split_dir is None:
        raise UserError(f"the prepared dataset has no {args.split!r} split: pass --data FOLDER")
    sender = choose_backend(args).sender(EndpointRequest(args.name))
    print(f"evaluate: {split_dir} through {sender.where}", flush=True)
    with Progress("evaluate", None, unit="images", stream=sys.stdout) as bar:
        result = evaluate(sender.send, Path(split_dir), sender.classes, bar.advance_to)
    print(format_evaluation(result))
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    from .transform import format_summary

    request = TransformRequest(
        args.name, data=args.data, split=args.split, model=args.model, max_payload=args.max_payload,
        environment=dict(args.env), input=args.input, job=args.job, model_data=args.model_data,
        instance_type=args.instance_type, instance_count=args.instance_count, wait=args.wait,
        attach=args.attach)
    result: TransformResult = choose_backend(args).transform(request)
    if not result.waited:
        print(f"transform: not waiting; `dogctl transform --sagemaker --attach {result.name}` follows it")
        return 0
    if result.status not in (None, "Completed"):
        print(f"transform: job {result.name} {result.status}: {result.reason}", file=sys.stderr)
    assert result.summary is not None and result.output is not None
    print(format_summary(result.summary, result.output))
    return 0 if result.ok else 1


def cmd_teardown(args: argparse.Namespace) -> int:
    chosen = choose_backend(args)
    return print_teardown(chosen.teardown(EndpointRequest(args.name)), chosen.name)


def print_teardown(result: TeardownResult, where: str) -> int:
    if where == "local":
        print(f"teardown: endpoint {result.name!r} " + ("stopped" if result.deleted else "was not running"))
    elif result.deleted:
        print(f"teardown: deleted {', '.join(result.deleted)}")
    else:
        print(f"teardown: nothing named {result.name!r} to delete")
    return 0


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


COMMANDS = {"data": cmd_data, "train": cmd_train, "tune": cmd_tune, "stop": cmd_stop, "report": cmd_report,
            "deploy": cmd_deploy, "invoke": cmd_invoke, "evaluate": cmd_evaluate, "transform": cmd_transform,
            "teardown": cmd_teardown, "resources": cmd_resources, "init": cmd_init,
            "register": cmd_register, "approve": cmd_review, "reject": cmd_review, "summary": cmd_summary}


class Terminated(BaseException):
    """SIGTERM: stop as Ctrl-C does (what the command started is stopped, checkpoints kept)."""


def _on_signal(signum: int, frame: object) -> None:
    interrupts.interrupt_all()  # what was started stops (trials in threads do not see the signal)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


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
    except Exception as exc:  # an AWS refusal no verb put in words: one line, not a traceback
        if type(exc).__module__.split(".")[0] != "botocore":
            raise
        print(f"dogctl {args.command}: error: AWS refused: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dogctl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"dogctl {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())

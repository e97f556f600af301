"""``dogctl``: the workflow of the reference write-ups as one command-line tool.

    dogctl data  [--source ZIP|FOLDER|URL]        fetch, extract and check the dataset
    dogctl train --local [--hp NAME=VALUE ...]    train with the real `train` program
    dogctl tune --local [--trials 20 --parallel 2] tune (Optuna), best hyperparameters to a file
    dogctl report RUN_DIR                         the HTML report of a job (rules included)
    dogctl deploy [--model RUN_DIR]               serve a model (the newest by default) on :8080
    dogctl invoke PHOTO...                        the top breeds of each photo, from the endpoint
    dogctl evaluate [--split test]                a whole split through the endpoint: accuracy, errors
    dogctl teardown                               stop the endpoint
    dogctl summary                                data, tuning, model and report, in a few lines

train, tune, deploy, invoke, evaluate and teardown take --sagemaker to do the same on SageMaker
(after `dogctl data --sagemaker`); see README.

Every command prints progress, and a one-line error instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from dogbreed.debugger import TENSORS_DIR, hook_config
from dogbreed.hyperparameters import HyperparameterError, Tune, describe_tune, parse
from dogbreed.jobdir import JobDirError
from dogbreed.opt_ml import CLASSES_FILE
from dogbreed.report import REPORT_FILE, TUNING_FILE

from . import aws, dataset, endpoint, local, runner, tuning
from .progress import Progress

DEFAULT_WORKDIR = Path("work")
DEBUG_SAVES = 8  # full tensor saves after the first ten steps, in a local run
POLL_SECONDS = float(os.environ.get("DOGCTL_POLL_SECONDS", "30"))  # SageMaker status polling


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
    if args.sagemaker:
        settings = aws.Settings.load({"bucket": args.bucket, "prefix": args.prefix,
                                      "region": args.region}, args.config)
        settings.need("bucket")
        session = settings.session()
        uris = {}
        for split, path in prepared.channels.items():
            with Progress(f"data: uploading {split}", None, unit="files", stream=sys.stdout) as bar:
                result = aws.upload_channel(session, path, settings.s3_uri("data", split),
                                            lambda done, total, bar=bar: bar.advance_to(done, total))
            uris[split] = result.uri
            print(f"data: {split} -> {result.uri} ({result.uploaded} uploaded, {result.unchanged} unchanged)")
        dataset.save_s3_channels(args.workdir, uris)
        print("data: channels: " + json.dumps(uris))
    return 0


def _job_name(prefix: str) -> str:
    """A unique SageMaker job name (tuning job names are at most 32 characters)."""
    return datetime.now(UTC).strftime(f"{prefix}-%y%m%d-%H%M%S")


def _settings(args: argparse.Namespace) -> aws.Settings:
    options = {name: getattr(args, name, None) for name in ("bucket", "prefix", "region", "role", "image")}
    options["train_instance_type"] = getattr(args, "instance_type", None)
    return aws.Settings.load(options, args.config)


LAST_JOB = Path("sagemaker") / "last-training-job"


def cmd_train_sagemaker(args: argparse.Namespace, hyperparameters: dict[str, str]) -> int:
    from . import sagemaker_jobs

    settings = _settings(args)
    session = sagemaker_jobs.session(settings)
    name = args.attach or args.name or _job_name("dogbreed")
    if not args.attach:
        channels = dataset.load_s3_channels(args.workdir)
        job = sagemaker_jobs.estimator(settings, hyperparameters, session=session, job_name=name,
                                       spot=args.spot, debugger=args.debugger)
        job.fit(channels, wait=False, job_name=name)
        (args.workdir / LAST_JOB).parent.mkdir(parents=True, exist_ok=True)
        (args.workdir / LAST_JOB).write_text(name + "\n")
        print(f"train: SageMaker training job {name} submitted ({settings.train_instance_type}"
              f"{', spot' if args.spot else ''}); channels {json.dumps(channels)}")
        print(f"train: https://{session.boto_region_name}.console.aws.amazon.com/sagemaker/home"
              f"#/jobs/{name}", flush=True)
        if not args.wait:
            print(f"train: not waiting; `dogctl train --sagemaker --attach {name}` follows it to the end")
            return 0
    job = sagemaker_jobs.wait_training(session.sagemaker_client, name,
                                       lambda line: print(f"train: {line}", flush=True), poll=POLL_SECONDS)
    status = job["TrainingJobStatus"]
    metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
    print(f"train: job {name} {status}" + (f": {job.get('FailureReason')}" if status == "Failed" else ""))
    if metrics:
        print("train: final metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))
    statuses = sagemaker_jobs.rule_statuses(job)
    print("train: rule verdicts:" if statuses else "train: rule verdicts: none reported")
    for rule in statuses:
        print(f"  {rule['RuleConfigurationName']:<28} {rule.get('RuleEvaluationStatus', '?'):<14} "
              f"{rule.get('StatusDetails', '')}".rstrip())
    dest = args.workdir / "runs" / name
    with Progress("train: downloading outputs", None, unit="parts", stream=sys.stdout):
        found = sagemaker_jobs.download(session, job, dest)
    for part, uri in found.items():
        print(f"  {part:<16} {uri}")
    if "model" in found:
        from dogbreed.report import write_report

        print(f"train: report in {write_report(dest)}")
    print(f"train: outputs in {dest}")
    return 0 if status == "Completed" else 1


def cmd_train(args: argparse.Namespace) -> int:
    hyperparameters = hyperparameters_from(args)
    if args.sagemaker:
        return cmd_train_sagemaker(args, hyperparameters)
    where = _runner(args)
    prepared = dataset.load_prepared(args.workdir)
    run_dir = local.new_run_dir(args.workdir, "train", args.name)
    print(f"train: local run in {run_dir} on {prepared.name} "
          f"({prepared.counts['train']} training images)", flush=True)
    if args.hyperparameters:  # from a tuning study: its trials go into this run's report
        study = Path(args.hyperparameters).with_name(TUNING_FILE)
        if study.is_file():
            out = run_dir / "opt_ml" / "output" / "data"
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy2(study, out / TUNING_FILE)
    debug_hook = None
    if args.debugger:
        params = parse(hyperparameters)
        steps = params.epochs * -(-prepared.counts["train"] // params.batch_size)
        interval = args.debug_interval or max(1, steps // DEBUG_SAVES)
        def debug_hook(opt_ml: Path) -> dict:
            return hook_config(opt_ml / "output" / TENSORS_DIR, interval)
        print(f"train: debugger on: tensors at steps 0-9 and every {interval} steps "
              f"(of {steps}), losses at every step", flush=True)
    print(f"train: running {where.describe()}", flush=True)
    result = local.run_training(run_dir, prepared.channels, hyperparameters, runner=where,
                                debug_hook=debug_hook)
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


def _runner(args: argparse.Namespace) -> runner.Runner:
    return runner.choose(args.runner, args.local_image)


def cmd_report(args: argparse.Namespace) -> int:
    from dogbreed.jobdir import JobDir
    from dogbreed.report import write_report
    from dogbreed.verdicts import load_verdicts

    path = write_report(args.job, out=args.out, evaluate=args.rules)
    for r in load_verdicts(JobDir.find(args.job)) or []:
        print(f"  {r.rule:<25} {r.verdict:<16} {r.summary}")
    print(f"report: {path}")
    return 0


def parse_range(text: str) -> tuple[str, Tune]:
    """NAME=LOW:HIGH[:log] or NAME=A|B|C -> a search range."""
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise UsageError(f"--range takes NAME=LOW:HIGH[:log] or NAME=A|B|C, got {text!r}")
    if "|" in spec:
        return name, Tune(values=tuple(getattr(parse({name: v}), name) for v in spec.split("|")))
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise UsageError(f"--range takes NAME=LOW:HIGH[:log] or NAME=A|B|C, got {text!r}")
    low, high = (getattr(parse({name: v}), name) for v in parts[:2])
    return name, Tune(low=low, high=high, log=len(parts) == 3)


def cmd_tune(args: argparse.Namespace) -> int:
    fixed = hyperparameters_from(args)
    ranges = tuple(parse_range(r) for r in args.range or [])
    tuned = tuple(n.strip() for n in args.tune.split(",") if n.strip())
    name = args.name or (_job_name("dogbreed-tune") if args.sagemaker else "tune")
    setup = tuning.TuningSetup(name, args.trials, args.parallel, tuned, tuple(fixed.items()),
                               args.seed, ranges)
    space = setup.space()  # checks the names
    if args.sagemaker:
        return cmd_tune_sagemaker(args, setup)
    where = _runner(args)
    prepared = dataset.load_prepared(args.workdir)
    print(f"tune: study {name!r}: {args.trials} trials, {args.parallel} in parallel, TPE sampler "
          f"with median pruning, objective valid_acc, on {prepared.name}", flush=True)
    for param, tune in space.items():
        print(f"  {param}: {describe_tune(tune)}")
    print(f"tune: trials run {where.describe()}", flush=True)
    summary = tuning.run_study(args.workdir, prepared.channels, setup, runner=where,
                               emit=lambda line: print(line, flush=True))
    return _tuning_outcome(summary, list(space), f"study {name!r}: {len(summary['trials'])} trials")


def cmd_tune_sagemaker(args: argparse.Namespace, setup: tuning.TuningSetup) -> int:
    from . import sagemaker_jobs, sagemaker_tuning

    settings = _settings(args)
    session = sagemaker_jobs.session(settings)
    client = session.sagemaker_client
    name = setup.name
    if args.attach:
        name = args.attach
        print(f"tune: waiting for the SageMaker tuning job {name}", flush=True)
    else:
        channels = dataset.load_s3_channels(args.workdir)
        job = sagemaker_tuning.tuner(settings, setup, session=session)
        job.fit({k: v for k, v in channels.items() if k != "test"}, job_name=name, wait=False)
        print(f"tune: SageMaker tuning job {name} submitted: {setup.trials} jobs, {setup.parallel} in "
              f"parallel, {sagemaker_tuning.STRATEGY} search, early stopping "
              f"{sagemaker_tuning.EARLY_STOPPING}, "
              f"objective valid_acc, on {settings.train_instance_type}", flush=True)
        for param, tune in setup.space().items():
            print(f"  {param}: {describe_tune(tune)}")
        if not args.wait:
            print(f"tune: not waiting; `dogctl tune --sagemaker --attach {name}` waits and writes "
                  "the results")
            return 0
    with Progress("tune", None, unit="jobs", stream=sys.stdout) as bar:
        job = sagemaker_tuning.wait(client, name, lambda done, total, text: bar.advance_to(done, total),
                                    poll=POLL_SECONDS)
    summary = sagemaker_tuning.summarize(job, sagemaker_tuning.trials(client, name), dict(setup.fixed),
                                         args.workdir / "tuning" / name)
    return _tuning_outcome(summary, list(setup.space()), f"SageMaker tuning job {name} {summary['status']}")


def _tuning_outcome(summary: dict, names: list[str], headline: str) -> int:
    print(f"tune: {headline}")
    print(tuning.trials_table(summary, names))
    if not summary["best"]:
        print("tune: no trial completed", file=sys.stderr)
        return 1
    print(f"tune: best {summary['best']['name']} valid_acc={summary['best']['objective']:.4f}; "
          f"hyperparameters in {summary['best_file']}")
    print(f"tune: next: dogctl train --hyperparameters {summary['best_file']}")
    return 0


def _sagemaker_session(args: argparse.Namespace) -> object:
    from . import sagemaker_jobs

    return sagemaker_jobs.session(_settings(args))


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.sagemaker:
        return cmd_deploy_sagemaker(args)
    model = endpoint.model_folder(args.model) if args.model else endpoint.newest_model(args.workdir)
    name = args.name or endpoint.DEFAULT_NAME
    print(f"deploy: starting serve on {model} (port {args.port})", flush=True)
    ep = endpoint.deploy(args.workdir, model, name=name, port=args.port, workers=args.workers)
    print(f"deploy: endpoint {ep.name!r} ready at {ep.url} (log {ep.log}); `dogctl teardown` stops it")
    return 0


def cmd_deploy_sagemaker(args: argparse.Namespace) -> int:
    from . import sagemaker_endpoint as sme
    from . import sagemaker_jobs

    settings = _settings(args)
    session = sagemaker_jobs.session(settings)
    name = args.name or sme.DEFAULT_NAME
    if args.model_data:
        data = args.model_data
    else:
        last = args.workdir / LAST_JOB
        job = args.job or (last.read_text().strip() if last.is_file() else None)
        if not job:
            raise UsageError("which model? pass --job TRAINING_JOB or --model-data s3://.../model.tar.gz "
                             "(or run `dogctl train --sagemaker` first)")
        data = sme.model_data(session.sagemaker_client, job)
    hosting = sme.Hosting(args.instance_type or settings.endpoint_instance_type, args.instance_count,
                          args.serverless_memory, args.max_concurrency)
    print(f"deploy: {data} to endpoint {name!r} ({hosting.describe()})", flush=True)
    last_status = [""]

    def progress(status: str, seconds: float) -> None:
        if status != last_status[0]:
            print(f"deploy: {seconds:5.0f}s  {status}", flush=True)
            last_status[0] = status

    sme.deploy(settings, session, data, name, hosting, progress, poll=POLL_SECONDS)
    print(f"deploy: endpoint {name!r} in service; `dogctl invoke --sagemaker PHOTO` to use it, "
          f"`dogctl teardown --sagemaker` to stop paying for it")
    return 0


def _sender(args: argparse.Namespace) -> tuple[endpoint.Send, str, list[str] | None]:
    """(send, where, the model's classes when known) for the chosen backend."""
    if args.sagemaker:
        from . import sagemaker_endpoint as sme

        name = args.name or sme.DEFAULT_NAME
        return sme.runtime_send(_sagemaker_session(args), name), f"SageMaker endpoint {name}", None
    ep = endpoint.ready(endpoint.Endpoint.load(args.workdir, args.name or endpoint.DEFAULT_NAME))
    classes = json.loads((Path(ep.model_dir) / CLASSES_FILE).read_text())
    return endpoint.http_send(ep.url), ep.url, classes


def cmd_invoke(args: argparse.Namespace) -> int:
    for photo in args.photos:
        if not photo.is_file():
            raise UsageError(f"{photo}: no such file")
    send, _, _ = _sender(args)
    for photo in args.photos:
        top = endpoint.invoke(send, photo, args.top_k)
        print(f"{photo}: " + ", ".join(f"{p['breed']} {100 * p['probability']:.1f}%" for p in top))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    split_dir = args.data or dataset.load_prepared(args.workdir).channels.get(args.split)
    if split_dir is None:
        raise UsageError(f"the prepared dataset has no {args.split!r} split: pass --data FOLDER")
    send, where, classes = _sender(args)
    print(f"evaluate: {split_dir} through {where}", flush=True)
    with Progress("evaluate", None, unit="images", stream=sys.stdout) as bar:
        result = endpoint.evaluate(send, Path(split_dir), classes, bar.advance_to)
    print(endpoint.format_evaluation(result))
    return 0


def cmd_teardown(args: argparse.Namespace) -> int:
    if args.sagemaker:
        from . import sagemaker_endpoint as sme

        name = args.name or sme.DEFAULT_NAME
        deleted = sme.teardown(_sagemaker_session(args).sagemaker_client, name)
        print(f"teardown: deleted {', '.join(deleted)}" if deleted
              else f"teardown: nothing named {name!r} to delete")
        return 0
    name = args.name or endpoint.DEFAULT_NAME
    stopped = endpoint.teardown(args.workdir, name)
    print(f"teardown: endpoint {name!r} " + ("stopped" if stopped else "was not running"))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """What the local workflow has produced so far, in a few lines (the end of `make demo`)."""
    from dogbreed.jobdir import JobDir

    prepared = dataset.load_prepared(args.workdir)
    counts = ", ".join(f"{split} {n}" for split, n in prepared.counts.items())
    print(f"summary: data {prepared.name}: {prepared.classes} classes; {counts} images")
    for study in sorted((args.workdir / "tuning").glob(f"*/{TUNING_FILE}")):
        tuned = json.loads(study.read_text())
        best = tuned.get("best") or {}
        line = f"summary: tuning {tuned['study']!r}: {len(tuned['trials'])} trials"
        if best:
            line += (f"; best {best['name']} valid_acc {best['objective']:.4f} "
                     f"({study.with_name(tuning.BEST_FILE)})")
        print(line)
    job = JobDir.find(endpoint.newest_model(args.workdir).parent)
    metrics = job.metadata()["metrics"]
    scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "selected_epoch")
    print(f"summary: model {job.model} (epoch {metrics['selected_epoch']}): {scores}")
    report = job.output_data / REPORT_FILE
    if report.is_file():
        print(f"summary: report {report}")
    return 0


def aws_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings file (default: $DOGCTL_CONFIG or ./dogctl.toml)")
    p.add_argument("--bucket", help="S3 bucket (or DOGCTL_BUCKET, or the settings file)")
    p.add_argument("--prefix", help="S3 key prefix (default: dogbreed)")
    p.add_argument("--region", help="AWS region (default: the AWS configuration)")


def job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", help="SageMaker execution role ARN (or DOGCTL_ROLE, or the settings file)")
    p.add_argument("--image", help="image URI from `make push` (or DOGCTL_IMAGE, or the settings file)")
    p.add_argument("--instance-type", help="training instance type (default: ml.g4dn.xlarge)")
    aws_options(p)


def runner_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runner", choices=runner.KINDS, default=os.environ.get("DOGCTL_RUNNER", "auto"),
                   help="locally, where `train` runs: in the image with a container engine, or as a "
                        "process; auto: the container when an engine and the image are there "
                        "(default: $DOGCTL_RUNNER or auto)")
    p.add_argument("--local-image", default=os.environ.get("DOGCTL_LOCAL_IMAGE", runner.DEFAULT_IMAGE),
                   help="locally, the image to run `train` in (default: $DOGCTL_LOCAL_IMAGE or "
                        f"{runner.DEFAULT_IMAGE}, what `make build` tags)")


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
    p.add_argument("--sagemaker", action="store_true",
                   help="also upload the channels to S3 (s3://BUCKET/PREFIX/data/<split>/), skipping "
                        "unchanged files, for SageMaker jobs")
    aws_options(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a model")
    p.add_argument("--local", action="store_true", default=True,
                   help="run on this machine (the default)")
    p.add_argument("--hp", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter (repeatable); see `dogbreed hyperparameters`")
    p.add_argument("--hyperparameters", metavar="FILE", help="JSON file of hyperparameters")
    p.add_argument("--name", help="run name (default: train-<timestamp>)")
    p.add_argument("--no-debugger", dest="debugger", action="store_false",
                   help="no Debugger hook (no tensors saved, no rules, no report at the end)")
    p.add_argument("--debug-interval", type=int, metavar="STEPS",
                   help=f"save weights and gradients every STEPS training steps "
                        f"(default: about {DEBUG_SAVES} times in the run)")
    runner_options(p)
    p.add_argument("--sagemaker", action="store_true",
                   help="submit a SageMaker training job instead (channels from `dogctl data --sagemaker`)")
    job_options(p)
    p.add_argument("--spot", action="store_true", help="managed spot training (resumes from checkpoints)")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="with --sagemaker: submit and return (then `--attach NAME`)")
    p.add_argument("--attach", metavar="JOB", help="with --sagemaker: follow an existing training job to "
                   "its end, print its rule verdicts, download its outputs and write its report")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="tune hyperparameters (locally: an Optuna study)")
    p.add_argument("--local", action="store_true", default=True,
                   help="run on this machine (the default)")
    p.add_argument("--name", help="study name; the same name resumes it (default: tune; "
                   "with --sagemaker: dogbreed-tune-<timestamp>)")
    p.add_argument("--trials", type=int, default=20, help="trials in all (default: %(default)s)")
    p.add_argument("--parallel", type=int, default=2, help="trials at a time (default: %(default)s)")
    p.add_argument("--tune", default="lr,eps,weight_decay,batch_size,epochs",
                   help="hyperparameters to search, comma-separated (default: %(default)s)")
    p.add_argument("--range", action="append", metavar="NAME=LOW:HIGH[:log]|NAME=A|B",
                   help="override a search range (repeatable)")
    p.add_argument("--hp", action="append", metavar="NAME=VALUE",
                   help="a fixed hyperparameter for every trial (repeatable)")
    p.add_argument("--hyperparameters", metavar="FILE", help="JSON file of fixed hyperparameters")
    p.add_argument("--seed", type=int, default=0,
                   help="sampler seed (default: %(default)s); the same trials again only with "
                        "--parallel 1: Optuna reseeds its sampler for parallel trials")
    runner_options(p)
    p.add_argument("--sagemaker", action="store_true",
                   help="a SageMaker HyperparameterTuner job instead (channels from "
                        "`dogctl data --sagemaker`)")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="with --sagemaker: submit and return (then `--attach NAME`)")
    p.add_argument("--attach", metavar="JOB", help="with --sagemaker: wait for an existing tuning job, "
                   "then write its results")
    job_options(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="write the HTML report of a job folder")
    p.add_argument("job", type=Path, metavar="RUN_DIR",
                   help="a run folder, its opt_ml folder, or a SageMaker job's downloaded output")
    p.add_argument("--rules", action="store_true",
                   help="evaluate the Debugger rules again (default: the saved verdicts)")
    p.add_argument("--out", type=Path, help="where to write (default: the job's output/data/report.html)")
    p.set_defaults(func=cmd_report)

    def endpoint_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", help=f"endpoint name (default: {endpoint.DEFAULT_NAME}; "
                       "with --sagemaker: dogbreed)")
        p.add_argument("--sagemaker", action="store_true", help="the SageMaker endpoint instead")
        aws_options(p)

    p = sub.add_parser("deploy", help="serve a trained model as an endpoint (locally: the real `serve`)")
    p.add_argument("--model", type=Path, help="model folder, /opt/ml tree or run folder "
                   "(default: the newest model under WORKDIR/runs)")
    p.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    p.add_argument("--workers", type=int, help="server worker processes (default: serve's)")
    endpoint_options(p)
    p.add_argument("--job", help="with --sagemaker: the training job whose model to deploy "
                   "(default: the last one `dogctl train --sagemaker` submitted)")
    p.add_argument("--model-data", metavar="S3_URI", help="with --sagemaker: a model.tar.gz in S3 instead")
    p.add_argument("--role", help="SageMaker execution role ARN (or DOGCTL_ROLE, or the settings file)")
    p.add_argument("--image", help="image URI from `make push` (or DOGCTL_IMAGE, or the settings file)")
    p.add_argument("--instance-type",
                   help="with --sagemaker: endpoint instance type (default: ml.g4dn.xlarge)")
    p.add_argument("--instance-count", type=int, default=1, help="with --sagemaker: instances (default: 1)")
    p.add_argument("--serverless-memory", type=int, choices=range(1024, 6145, 1024), metavar="MB",
                   help="with --sagemaker: a serverless endpoint with this memory (1024-6144, CPU only)")
    p.add_argument("--max-concurrency", type=int, default=5,
                   help="with --serverless-memory: concurrent invocations (default: %(default)s)")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("invoke", help="send photos to the endpoint, print the top breeds")
    p.add_argument("photos", type=Path, nargs="+", metavar="PHOTO")
    p.add_argument("--top-k", type=int, default=3, help="breeds per photo (default: %(default)s)")
    endpoint_options(p)
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser("evaluate", help="run a split through the endpoint: accuracy and errors")
    p.add_argument("--split", default="test", help="split of the prepared dataset (default: %(default)s)")
    p.add_argument("--data", type=Path, help="a folder of class folders instead")
    endpoint_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("summary", help="what the local workflow produced: data, tuning, model, report")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("teardown", help="stop the endpoint (SageMaker: delete endpoint, config and model)")
    endpoint_options(p)
    p.set_defaults(func=cmd_teardown)
    return parser


class Terminated(BaseException):
    """SIGTERM: stop as Ctrl-C does (what the command started is stopped, checkpoints kept)."""


def _on_signal(signum: int, frame: object) -> None:
    # Trials run in threads, which a signal cannot interrupt: their `train` runs are stopped here.
    local.stop_all()
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when ignored (nohup, &)
        signal.signal(signal.SIGINT, _on_signal)
    try:
        return args.func(args)
    except (UsageError, HyperparameterError, dataset.DatasetError, JobDirError,
            endpoint.EndpointError, aws.AwsError, runner.RunnerError) as exc:
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

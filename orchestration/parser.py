"""``dogctl``: the workflow of the reference write-ups as one command-line tool.

    dogctl init --sagemaker                       set up an AWS account: bucket, repository, role
    dogctl data  [--source ZIP|FOLDER|URL]        fetch, extract and check the dataset
    dogctl train --local [--hp NAME=VALUE ...]    train with the real `train` program
    dogctl tune --local [--trials 20 --parallel 2] tune (Optuna), best hyperparameters to a file
    dogctl stop NAME                              stop a running training run or study
    dogctl report RUN_DIR                         the HTML report of a job (rules included)
    dogctl register [--model RUN_DIR]             a model as a new version in the registry
    dogctl approve|reject PACKAGE                 review a registered version
    dogctl deploy [--model RUN_DIR]               serve a model (the newest by default) on :8080
    dogctl invoke PHOTO...                        the top breeds of each photo, from the endpoint
    dogctl evaluate [--split test]                a whole split through the endpoint: accuracy, errors
    dogctl transform [--data FOLDER]              batch transform: every photo through the model, to files
    dogctl teardown                               stop the endpoint
    dogctl summary                                data, tuning, model and report, in a few lines
    dogctl resources                              what still runs or bills

Every verb but report and summary takes --sagemaker to do the same on SageMaker (after
`dogctl init --sagemaker` and `dogctl data --sagemaker`); see README.

Every command prints progress, and a one-line error instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import dataset
from .local.runner import DEFAULT_IMAGE
from .local.runner import KINDS as RUNNER_KINDS
from .option_types import above_zero, bounds, env_item, keep_alive, model_group, percent, tag_item
from .packages import DEFAULT_GROUP
from .sagemaker.training import DEBUGGER_MODES

DEFAULT_WORKDIR = Path("work")

def _data(sub: Any) -> None:
    p = sub.add_parser("data", help="fetch, extract and check the dataset")
    p.add_argument("--source", help=f"zip file, folder or URL (default: {dataset.DOGIMAGES_URL})")
    p.add_argument("--test-from-valid", type=float, default=0.5, metavar="FRACTION",
                   help="if the dataset has no test split, move this fraction of each valid "
                        "class into one (default 0.5; 0: none)")
    p.add_argument("--valid-fraction", type=float, default=0.15, metavar="FRACTION",
                   help="a folder of class folders (no train/valid split): this fraction of each "
                        "class to valid (default 0.15)")
    p.add_argument("--test-fraction", type=float, default=0.15, metavar="FRACTION",
                   help="... and this fraction to test (default 0.15; --test-from-valid 0: none)")
    p.add_argument("--sagemaker", action="store_true",
                   help="also upload the channels to S3 (s3://BUCKET/PREFIX/data/<split>/), skipping "
                        "unchanged files, for SageMaker jobs")
    aws_options(p)


def _train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model")
    p.add_argument("--local", action="store_true", default=True,
                   help="run on this machine (the default)")
    p.add_argument("--hp", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter (repeatable); see `dogbreed hyperparameters`")
    p.add_argument("--hyperparameters", metavar="FILE", help="JSON file of hyperparameters")
    p.add_argument("--name", help="run name (default: train-<timestamp>)")
    p.add_argument("--debugger", choices=DEBUGGER_MODES, default="container",
                   help="container (the default): the Debugger hook, rules and report run inside "
                        "the job; managed: with --sagemaker, also SageMaker Debugger's hook "
                        "configuration, built-in rules and profiler (closed to AWS accounts opened "
                        "since 2026-07-30); off: none")
    p.add_argument("--no-debugger", dest="debugger", action="store_const", const="off",
                   help="the same as --debugger off")
    p.add_argument("--debug-interval", type=int, metavar="STEPS",
                   help="save the reductions of weights and gradients every STEPS training steps "
                        "(default: about 8 times in the run)")
    runner_options(p)
    p.add_argument("--sagemaker", action="store_true",
                   help="submit a SageMaker training job instead (channels from `dogctl data --sagemaker`)")
    job_options(p)
    p.add_argument("--spot", action="store_true", help="managed spot training (resumes from checkpoints)")
    wait_options(p, "follow an existing training job to its end, print its rule verdicts, download "
                    "its outputs and write its report")


def _tune(sub: Any) -> None:
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
                   help="a SageMaker hyperparameter tuning job instead (channels from "
                        "`dogctl data --sagemaker`)")
    wait_options(p, "wait for an existing tuning job, then write its results")
    job_options(p)


def _report(sub: Any) -> None:
    p = sub.add_parser("report", help="write the HTML report of a job folder")
    p.add_argument("job", type=Path, metavar="RUN_DIR",
                   help="a run folder, its opt_ml folder, or a SageMaker job's downloaded output")
    p.add_argument("--rules", action="store_true",
                   help="evaluate the Debugger rules again (default: the saved verdicts)")
    p.add_argument("--out", type=Path, help="where to write (default: the job's output/data/report.html)")


def _deploy(sub: Any) -> None:
    p = sub.add_parser("deploy", help="serve a trained model as an endpoint (locally: the real `serve`)")
    p.add_argument("--model", type=Path, help="model folder, /opt/ml tree or run folder "
                   "(default: the newest model under WORKDIR/runs)")
    p.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    p.add_argument("--workers", type=int, help="server worker processes (default: serve's)")
    env_option(p, "; serverless endpoints get SAGEMAKER_MODEL_SERVER_WORKERS=1 unless given")
    endpoint_options(p)
    sagemaker_model_options(p)
    p.add_argument("--instance-type",
                   help="with --sagemaker: endpoint instance type (default: ml.g4dn.xlarge)")
    p.add_argument("--instance-count", type=int, default=1, help="with --sagemaker: instances (default: 1)")
    p.add_argument("--ami-version", help="with --sagemaker on a GPU instance: the endpoint's "
                   "InferenceAmiVersion (default: al2023-ami-sagemaker-inference-gpu-4-1, NVIDIA driver "
                   "580 for the image's CUDA 13.0)")
    p.add_argument("--serverless-memory", type=int, choices=range(1024, 6145, 1024), metavar="MB",
                   help="with --sagemaker: a serverless endpoint with this memory (1024-6144, CPU only)")
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="with --sagemaker: an asynchronous endpoint (requests and answers through S3, "
                   "payloads up to 1 GB, up to an hour each; `dogctl invoke` and `evaluate` use it the same)")
    p.add_argument("--max-concurrency", type=int, default=5,
                   help="with --serverless-memory: concurrent invocations; with --async: requests per "
                   "instance (default: %(default)s)")
    p.add_argument("--capture", dest="capture_percent", type=percent, metavar="PERCENT",
                   help="with --sagemaker: capture this share of requests and answers (1-100) to "
                   "s3://BUCKET/PREFIX/capture/NAME/ (not on serverless endpoints)")
    p.add_argument("--package", metavar="REF", help="an approved model package instead: latest-approved, a "
                   "version of --group, GROUP/VERSION or (with --sagemaker) an ARN")
    group_option(p)
    p.add_argument("--autoscale", type=bounds, metavar="MIN:MAX",
                   help="with --sagemaker: scale between MIN and MAX instances (Application Auto Scaling, "
                   "target tracking; MIN 0 only with --async); teardown removes it first")
    p.add_argument("--target-invocations", type=above_zero, metavar="N",
                   help="with --autoscale: invocations per instance per minute to keep to (default: 100; "
                   "measure your instance type)")
    p.add_argument("--target-backlog", type=above_zero, metavar="N",
                   help="with --autoscale --async: queued requests per instance to keep to (default: 5)")


def _invoke(sub: Any) -> None:
    p = sub.add_parser("invoke", help="send photos to the endpoint, print the top breeds")
    p.add_argument("photos", type=Path, nargs="+", metavar="PHOTO")
    p.add_argument("--top-k", type=int, default=3, help="breeds per photo (default: %(default)s)")
    endpoint_options(p)


def _evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="run a split through the endpoint: accuracy and errors")
    p.add_argument("--split", default="test", help="split of the prepared dataset (default: %(default)s)")
    p.add_argument("--data", type=Path, help="a folder of class folders instead")
    endpoint_options(p)


def _transform(sub: Any) -> None:
    p = sub.add_parser("transform", help="batch transform: every photo of a folder (or S3 prefix) through "
                       "the model, one answer file per photo, summarised")
    p.add_argument("--data", type=Path, help="a folder of photos (class folders give an accuracy; with "
                   "--sagemaker it is uploaded first); default: the prepared dataset's --split")
    p.add_argument("--split", default="test", help="split of the prepared dataset (default: %(default)s)")
    p.add_argument("--model", type=Path, help="locally: model folder, /opt/ml tree or run folder "
                   "(default: the newest model under WORKDIR/runs)")
    p.add_argument("--name", help="job name; outputs in WORKDIR/transforms/NAME (default: "
                   "transform-<timestamp>; with --sagemaker: dogbreed-transform-<timestamp>)")
    p.add_argument("--max-payload", type=int, default=20, metavar="MB",
                   help="the largest photo, in MB (SageMaker's MaxPayloadInMB, 1-100; default: %(default)s)")
    env_option(p, "")
    p.add_argument("--sagemaker", action="store_true", help="a SageMaker batch transform job instead")
    p.add_argument("--input", metavar="S3_URI", help="with --sagemaker: a prefix of photos already in S3")
    sagemaker_model_options(p)
    p.add_argument("--instance-type", help="with --sagemaker: transform instance type (default: "
                   "ml.m5.xlarge; GPU instances get the driver-535 AMI)")
    p.add_argument("--instance-count", type=int, default=1, help="with --sagemaker: instances (default: 1)")
    wait_options(p, "follow an existing transform job to its end, download and summarise its outputs")
    aws_options(p)


def _summary(sub: Any) -> None:
    sub.add_parser("summary", help="what the local workflow produced: data, tuning, model, report")


def _stop(sub: Any) -> None:
    p = sub.add_parser("stop", help="stop a running training job or tuning study (checkpoints kept)")
    p.add_argument("job", metavar="NAME", help="the run or study name (locally), or the SageMaker "
                   "training or tuning job name (with --sagemaker)")
    p.add_argument("--sagemaker", action="store_true", help="a SageMaker job (StopTrainingJob or "
                   "StopHyperParameterTuningJob)")
    aws_options(p)


def _teardown(sub: Any) -> None:
    p = sub.add_parser("teardown", help="stop the endpoint (SageMaker: delete endpoint, config and model)")
    endpoint_options(p)


def _init(sub: Any) -> None:
    p = sub.add_parser("init", help="set up an AWS account for --sagemaker: bucket, ECR repository, "
                       "execution role, dogctl.toml (creates only what is missing)")
    p.add_argument("--sagemaker", action="store_true", help="the AWS account of the AWS configuration")
    p.add_argument("--role-name", help="the execution role's name (default: the settings' role, else "
                   "dogbreed-sagemaker-execution)")
    p.add_argument("--repository", help="the ECR repository (default: the settings' image's, else dogbreed)")
    p.add_argument("--dry-run", action="store_true", help="change nothing: say what would be created and "
                   "print the policy documents")
    p.add_argument("--force", action="store_true", help="replace a settings file that says otherwise")
    tag_option(p)
    aws_options(p)


def group_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group", type=model_group, default=DEFAULT_GROUP,
                   help="the model group in the registry (default: %(default)s)")


def _register(sub: Any) -> None:
    p = sub.add_parser("register", help="a trained model as a new version in the model registry, pending "
                       "approval (locally: WORKDIR/registry/GROUP.json; SageMaker: Model Registry)")
    p.add_argument("--model", type=Path, help="locally: model folder, /opt/ml tree or run folder "
                   "(default: the newest model under WORKDIR/runs)")
    p.add_argument("--description", help="what this version is")
    group_option(p)
    p.add_argument("--sagemaker", action="store_true", help="in SageMaker's Model Registry, with the "
                   "job's metrics and rule verdicts")
    sagemaker_model_options(p)
    aws_options(p)


def _review(verb: str, what: str) -> Callable[[Any], None]:
    def add(sub: Any) -> None:
        p = sub.add_parser(verb, help=f"{what} a model package in the registry")
        p.add_argument("package", metavar="PACKAGE", help="latest, a version of --group, GROUP/VERSION or "
                       "(with --sagemaker) an ARN")
        p.add_argument("--note", help="why (SageMaker's ApprovalDescription)")
        group_option(p)
        p.add_argument("--sagemaker", action="store_true", help="in SageMaker's Model Registry")
        aws_options(p)

    return add


def _resources(sub: Any) -> None:
    p = sub.add_parser("resources", help="what dogctl started that still runs or bills (SageMaker: "
                       "endpoints, jobs in progress and warm pools it tagged; locally: endpoints, runs, "
                       "studies)")
    p.add_argument("--sagemaker", action="store_true", help="on SageMaker (found by dogctl's tags)")
    p.add_argument("--all", action="store_true", help="with --sagemaker: under every prefix, not only "
                   "this settings' (its dogctl:prefix tag)")
    aws_options(p)


def aws_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings file (default: $DOGCTL_CONFIG or ./dogctl.toml)")
    p.add_argument("--bucket", help="S3 bucket (or DOGCTL_BUCKET, or the settings file)")
    p.add_argument("--prefix", help="S3 key prefix (default: dogbreed)")
    p.add_argument("--region", help="AWS region (default: the AWS configuration)")


def job_options(p: argparse.ArgumentParser) -> None:
    tag_option(p)
    p.add_argument("--role", help="SageMaker execution role ARN (or DOGCTL_ROLE, or the settings file)")
    p.add_argument("--image", help="image URI from `make push` (or DOGCTL_IMAGE, or the settings file)")
    p.add_argument("--instance-type", help="training instance type (default: ml.g4dn.xlarge)")
    p.add_argument("--keep-alive", type=keep_alive, metavar="SECONDS",
                   help="with --sagemaker: keep the instances after each job for this long (1-3600; a "
                   "warm pool, billed while kept: the next job with the same role and instances starts "
                   "on them at once)")
    aws_options(p)


def wait_options(p: argparse.ArgumentParser, attach: str) -> None:
    """--no-wait and --attach JOB (``attach``: what attaching does) of a SageMaker job's verb."""
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="with --sagemaker: submit and return (then `--attach NAME`)")
    p.add_argument("--attach", metavar="JOB", help=f"with --sagemaker: {attach}")


def runner_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runner", choices=RUNNER_KINDS, default=os.environ.get("DOGCTL_RUNNER", "auto"),
                   help="locally, where `train` runs: in the image with a container engine, or as a "
                        "process; auto: the container when an engine and the image are there "
                        "(default: $DOGCTL_RUNNER or auto)")
    p.add_argument("--local-image", default=os.environ.get("DOGCTL_LOCAL_IMAGE", DEFAULT_IMAGE),
                   help="locally, the image to run `train` in (default: $DOGCTL_LOCAL_IMAGE or "
                        f"{DEFAULT_IMAGE}, what `make build` tags)")


def tag_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag", type=tag_item, action="append", default=[], metavar="KEY=VALUE",
                   help="with --sagemaker: a tag on what this creates (repeatable), beside the settings "
                   "file's [tags] and dogctl's own managed-by=dogctl and dogctl:prefix=PREFIX")


def sagemaker_model_options(p: argparse.ArgumentParser) -> None:
    tag_option(p)
    p.add_argument("--job", help="with --sagemaker: the training job whose model to use "
                   "(default: the last one `dogctl train --sagemaker` submitted)")
    p.add_argument("--model-data", metavar="S3_URI",
                   help="with --sagemaker: a model.tar.gz in S3 instead")
    p.add_argument("--role", help="SageMaker execution role ARN (or DOGCTL_ROLE, or the settings file)")
    p.add_argument("--image", help="image URI from `make push` (or DOGCTL_IMAGE, or the settings file)")


def env_option(p: argparse.ArgumentParser, note: str) -> None:
    p.add_argument("--env", type=env_item, action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the model server (repeatable), e.g. "
                   "SAGEMAKER_MODEL_SERVER_TIMEOUT=30" + note)


def endpoint_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="endpoint name (default: dogbreed-local; "
                   "with --sagemaker: dogbreed)")
    p.add_argument("--sagemaker", action="store_true", help="the SageMaker endpoint instead")
    aws_options(p)


VERBS = (_init, _data, _train, _tune, _report, _register, _review("approve", "approve"),
         _review("reject", "reject"), _deploy, _invoke, _evaluate, _transform, _summary, _stop, _teardown,
         _resources)


def build_parser() -> argparse.ArgumentParser:
    """dogctl's parser: one sub-parser per verb (the verb's name is ``args.command``)."""
    parser = argparse.ArgumentParser(prog="dogctl", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="where data, runs and state are kept (default: ./work)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb(sub)
    return parser

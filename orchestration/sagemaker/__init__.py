"""The SageMaker backend: the same verbs as the local one, as SageMaker jobs and endpoints,
driven with the sagemaker SDK v2 and boto3 (settings: :mod:`.settings`)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dogbreed.contract.hyperparameters import describe_tune
from dogbreed.errors import UserError

from .. import dataset
from ..invocation import Send
from ..progress import Progress
from ..tuning import TuningSetup
from .settings import AwsError, Settings

LAST_JOB = Path("sagemaker") / "last-training-job"


def job_name(prefix: str) -> str:
    """A unique SageMaker job name (tuning job names are at most 32 characters)."""
    return datetime.now(UTC).strftime(f"{prefix}-%y%m%d-%H%M%S")


def print_job_verdicts(dest: Path) -> None:
    """The verdicts the job's own rules wrote to its output (the in-container Debugger)."""
    from dogbreed.contract.jobdir import JobDir, JobDirError
    from dogbreed.debugger.verdicts import load_verdicts, verdict_lines

    try:
        verdicts = load_verdicts(JobDir.find(dest))
    except JobDirError:
        verdicts = None
    if not verdicts:
        print("train: rule verdicts from the job: none (the debugger was off, or the job wrote no model)")
        return
    print("train: rule verdicts from the job:")
    for line in verdict_lines(verdicts):
        print(line)


class SageMakerBackend:
    """The workflow's verbs on SageMaker; ``args`` are the parsed command line."""

    name = "sagemaker"

    def __init__(self, args: argparse.Namespace):
        self.workdir: Path = args.workdir
        names = ("bucket", "prefix", "region", "role", "image")
        options = {name: getattr(args, name, None) for name in names}
        options["train_instance_type"] = getattr(args, "instance_type", None)
        self.settings = Settings.load(options, args.config)
        self._session: Any = None

    @property
    def session(self) -> Any:
        """The sagemaker.Session, made on first use (it checks region and credentials)."""
        if self._session is None:
            from .training import session

            self._session = session(self.settings)
        return self._session

    def data(self, args: argparse.Namespace, prepared: dataset.Prepared) -> int:
        from .s3 import upload_channel

        self.settings.need("bucket")
        boto = self.settings.session()
        uris = {}
        for split, path in prepared.channels.items():
            with Progress(f"data: uploading {split}", None, unit="files", stream=sys.stdout) as bar:
                result = upload_channel(boto, path, self.settings.s3_uri("data", split),
                                        lambda done, total, bar=bar: bar.advance_to(done, total))
            uris[split] = result.uri
            print(f"data: {split} -> {result.uri} ({result.uploaded} uploaded, {result.unchanged} unchanged)")
        dataset.save_s3_channels(self.workdir, uris)
        print("data: channels: " + json.dumps(uris))
        return 0

    def train(self, args: argparse.Namespace, hyperparameters: dict[str, str]) -> int:
        from . import training

        name = args.attach or args.name or job_name("dogbreed")
        if not args.attach:
            self._submit_training(args, hyperparameters, name)
            if not args.wait:
                print(f"train: not waiting; `dogctl train --sagemaker --attach {name}` follows it to the end")
                return 0
        job = training.wait_training(self.session.sagemaker_client, name,
                                     lambda line: print(f"train: {line}", flush=True))
        status = job["TrainingJobStatus"]
        print(f"train: job {name} {status}" + (f": {job.get('FailureReason')}" if status == "Failed" else ""))
        metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
        if metrics:
            print("train: final metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))
        statuses = training.rule_statuses(job)
        if statuses:
            print("train: SageMaker Debugger's rule verdicts:")
        for rule in statuses:
            print(f"  {rule['RuleConfigurationName']:<28} {rule.get('RuleEvaluationStatus', '?'):<14} "
                  f"{rule.get('StatusDetails', '')}".rstrip())
        dest = self.workdir / "runs" / name
        self._download(job, dest)
        print_job_verdicts(dest)
        return 0 if status == "Completed" else 1

    def _submit_training(self, args: argparse.Namespace, hyperparameters: dict[str, str], name: str) -> None:
        from .training import estimator

        channels = dataset.load_s3_channels(self.workdir)
        job = estimator(self.settings, hyperparameters, session=self.session, job_name=name,
                        spot=args.spot, debugger=args.debugger)
        job.fit(channels, wait=False, job_name=name)
        (self.workdir / LAST_JOB).parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / LAST_JOB).write_text(name + "\n")
        print(f"train: SageMaker training job {name} submitted ({self.settings.train_instance_type}"
              f"{', spot' if args.spot else ''}); channels {json.dumps(channels)}")
        print(f"train: https://{self.session.boto_region_name}.console.aws.amazon.com/sagemaker/home"
              f"#/jobs/{name}", flush=True)

    def _download(self, job: dict[str, Any], dest: Path) -> None:
        from .training import download

        with Progress("train: downloading outputs", None, unit="parts", stream=sys.stdout):
            found = download(self.session, job, dest)
        for part, uri in found.items():
            print(f"  {part:<16} {uri}")
        if "model" in found:
            from dogbreed.debugger.report import write_report

            print(f"train: report in {write_report(dest)}")
        print(f"train: outputs in {dest}")

    def tune(self, args: argparse.Namespace, setup: TuningSetup) -> dict | None:
        from . import tuning

        client = self.session.sagemaker_client
        name = args.attach or setup.name
        if args.attach:
            print(f"tune: waiting for the SageMaker tuning job {name}", flush=True)
        else:
            channels = dataset.load_s3_channels(self.workdir)
            job = tuning.tuner(self.settings, setup, session=self.session)
            job.fit({k: v for k, v in channels.items() if k != "test"}, job_name=name, wait=False)
            print(f"tune: SageMaker tuning job {name} submitted: {setup.trials} jobs, {setup.parallel} in "
                  f"parallel, {tuning.STRATEGY} search, early stopping {tuning.EARLY_STOPPING}, "
                  f"objective valid_acc, on {self.settings.train_instance_type}", flush=True)
            for param, tune in setup.space().items():
                print(f"  {param}: {describe_tune(tune)}")
            if not args.wait:
                print(f"tune: not waiting; `dogctl tune --sagemaker --attach {name}` waits and writes "
                      "the results")
                return None
        with Progress("tune", None, unit="jobs", stream=sys.stdout) as bar:
            job = tuning.wait(client, name, lambda done, total, text: bar.advance_to(done, total))
        summary = tuning.summarize(job, tuning.trials(client, name), dict(setup.fixed),
                                   self.workdir / "tuning" / name)
        summary["headline"] = f"SageMaker tuning job {name} {summary['status']}"
        return summary

    def deploy(self, args: argparse.Namespace) -> int:
        from . import hosting

        name = args.name or hosting.DEFAULT_NAME
        data = args.model_data or hosting.model_data(self.session.sagemaker_client, self._deployed_job(args))
        spec = hosting.Hosting(args.instance_type or self.settings.endpoint_instance_type,
                               args.instance_count, args.serverless_memory, args.max_concurrency,
                               environment=dict(args.env), ami_version=args.ami_version,
                               async_output=self.settings.s3_uri("async", name) if args.use_async else None)
        print(f"deploy: {data} to endpoint {name!r} ({spec.describe()})", flush=True)
        last_status = [""]

        def progress(status: str, seconds: float) -> None:
            if status != last_status[0]:
                print(f"deploy: {seconds:5.0f}s  {status}", flush=True)
                last_status[0] = status

        hosting.deploy(self.settings, self.session, data, name, spec, progress)
        print(f"deploy: endpoint {name!r} in service; `dogctl invoke --sagemaker PHOTO` to use it, "
              f"`dogctl teardown --sagemaker` to stop paying for it")
        return 0

    def transform(self, args: argparse.Namespace) -> int:
        """A batch transform job over an S3 prefix of photos; outputs downloaded and summarised."""
        from ..transform import format_summary, summarise
        from . import hosting
        from . import transform as batch
        from .s3 import download_prefix, list_prefix

        client = self.session.sagemaker_client
        name = args.attach or args.name or job_name("dogbreed-transform")
        if not args.attach:
            data = args.model_data or hosting.model_data(client, self._deployed_job(args))
            job = batch.TransformJob(name, data, self._transform_input(args, name),
                                     self.settings.s3_uri("transform", name, "output"),
                                     args.instance_type or batch.DEFAULT_INSTANCE, args.instance_count,
                                     args.max_payload, dict(args.env))
            batch.start(self.settings, self.session, job)
            ami = batch.transform_ami(job.instance_type)
            print(f"transform: SageMaker transform job {name} submitted: {job.input_uri} -> {job.output_uri} "
                  f"({job.instance_count} x {job.instance_type}{f', AMI {ami}' if ami else ''}, one request "
                  f"per photo, up to {job.max_payload_mb} MB)", flush=True)
            if not args.wait:
                print(f"transform: not waiting; `dogctl transform --sagemaker --attach {name}` follows it")
                return 0
        last = [""]

        def progress(status: str, seconds: float) -> None:
            if status != last[0]:
                print(f"transform: {seconds:5.0f}s  {status}", flush=True)
                last[0] = status

        described = batch.wait(client, name, progress)
        if batch.delete_model(client, name):
            print(f"transform: model {name} deleted (the job has ended)")
        status = described["TransformJobStatus"]
        if status != "Completed":
            print(f"transform: job {name} {status}: {described.get('FailureReason', 'no reason given')}",
                  file=sys.stderr)
        s3 = self.settings.session().client("s3")
        input_uri = described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        inputs = [p.as_posix() for p in list_prefix(s3, input_uri)]
        output = self.workdir / "transforms" / name / "output"
        output.mkdir(parents=True, exist_ok=True)
        with Progress("transform: downloading outputs", None, unit="files", stream=sys.stdout):
            download_prefix(s3, described["TransformOutput"]["S3OutputPath"], output)
        summary = summarise(inputs, output)
        print(format_summary(summary, output))
        return 0 if status == "Completed" and not summary.failed else 1

    def _transform_input(self, args: argparse.Namespace, name: str) -> str:
        """The S3 prefix of photos: --input, or --data uploaded, or the prepared --split's channel."""
        from .s3 import upload_channel

        if args.input:
            if not args.input.startswith("s3://"):
                raise UserError(f"--input takes an S3 prefix (s3://bucket/photos/), got {args.input!r}")
            return args.input
        if args.data:
            boto = self.settings.session()
            with Progress("transform: uploading photos", None, unit="files", stream=sys.stdout) as bar:
                result = upload_channel(boto, args.data, self.settings.s3_uri("transform", name, "input"),
                                        lambda done, total: bar.advance_to(done, total))
            return result.uri
        channels = dataset.load_s3_channels(self.workdir)
        if args.split not in channels:
            raise UserError(f"no {args.split!r} channel in S3 (there are {', '.join(channels)}): "
                            "pass --split, --data FOLDER or --input S3_URI")
        return channels[args.split]

    def _deployed_job(self, args: argparse.Namespace) -> str:
        last = self.workdir / LAST_JOB
        job = args.job or (last.read_text().strip() if last.is_file() else None)
        if not job:
            raise UserError("which model? pass --job TRAINING_JOB or --model-data s3://.../model.tar.gz "
                            "(or run `dogctl train --sagemaker` first)")
        return job

    def sender(self, args: argparse.Namespace) -> tuple[Send, str, list[str] | None]:
        from .hosting import DEFAULT_NAME, async_config, async_send, runtime_send

        name = args.name or DEFAULT_NAME
        if async_config(self.session.sagemaker_client, name):
            return (async_send(self.session, name, self.settings.s3_uri("async", name, "input")),
                    f"SageMaker asynchronous endpoint {name} (each request through S3)", None)
        return runtime_send(self.session, name), f"SageMaker endpoint {name}", None

    def teardown(self, args: argparse.Namespace) -> int:
        from .hosting import DEFAULT_NAME, teardown

        name = args.name or DEFAULT_NAME
        deleted = teardown(self.session.sagemaker_client, name)
        print(f"teardown: deleted {', '.join(deleted)}" if deleted
              else f"teardown: nothing named {name!r} to delete")
        return 0

    def stop(self, args: argparse.Namespace) -> int:
        """StopTrainingJob, or StopHyperParameterTuningJob, for the job named ``args.job``."""
        from .training import stop

        kind, status = stop(self.session.sagemaker_client, args.job)
        print(f"stop: {kind} {args.job!r}: {status}")
        return 0


__all__ = ["AwsError", "SageMakerBackend", "job_name"]

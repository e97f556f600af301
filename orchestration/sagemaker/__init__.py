"""The SageMaker backend: the same verbs as the local one, as SageMaker jobs and endpoints,
created with the SageMaker Python SDK v3's sagemaker-core (:mod:`.api`) and followed with boto3
(settings: :mod:`.settings`). Each verb's work is in the module named like the local backend's:
:mod:`.training`, :mod:`.tuning`, :mod:`.hosting`, :mod:`.transform` (and :mod:`.s3` for the data)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dogbreed.errors import UserError

from .. import dataset
from ..backend import (
    Backend,
    DataRequest,
    DataResult,
    DeployRequest,
    DeployResult,
    EndpointRequest,
    Package,
    RegisterRequest,
    Reporter,
    ResourcesRequest,
    ResourcesResult,
    ReviewRequest,
    Sender,
    StopRequest,
    StopResult,
    TeardownResult,
    TrainRequest,
    TrainResult,
    TransformRequest,
    TransformResult,
    TuneRequest,
    TuneResult,
    Upload,
)
from .settings import AwsError, Settings

LAST_JOB = Path("sagemaker") / "last-training-job"


def job_name(prefix: str) -> str:
    """A unique SageMaker job name (tuning job names are at most 32 characters)."""
    return datetime.now(UTC).strftime(f"{prefix}-%y%m%d-%H%M%S")


def status_changes(report: Reporter, verb: str) -> Callable[[str, float], None]:
    """A ``progress(status, seconds)`` callback that reports each new status once."""
    last = [""]

    def progress(status: str, seconds: float) -> None:
        if status != last[0]:
            report.line(f"{verb}: {seconds:5.0f}s  {status}")
            last[0] = status

    return progress


class SageMakerBackend(Backend):
    """The workflow's verbs on SageMaker, with ``settings`` (:meth:`Settings.load`); ``reporter``:
    where progress goes."""

    name = "sagemaker"

    def __init__(self, workdir: Path, settings: Settings, *, reporter: Reporter | None = None):
        self.workdir = Path(workdir)
        self.settings = settings
        self.report = reporter or Reporter()

    @functools.cached_property
    def session(self) -> Any:
        """The boto3 session every call is made with, made on first use (it checks region and
        credentials)."""
        return self.settings.session()

    @functools.cached_property
    def client(self) -> Any:
        """The SageMaker API client of :attr:`session`."""
        return self.session.client("sagemaker")

    def data(self, request: DataRequest) -> DataResult:
        from .s3 import upload_channel

        self.settings.need("bucket")
        boto = self.session
        uploads = {}
        for split, path in request.channels.items():
            with self.report.bar(f"data: uploading {split}") as bar:
                done = upload_channel(boto, path, self.settings.s3_uri("data", split),
                                      lambda done, total, bar=bar: bar.advance_to(done, total))
            uploads[split] = Upload(done.uri, done.uploaded, done.unchanged)
        uris = {split: up.uri for split, up in uploads.items()}
        dataset.save_s3_channels(self.workdir, uris)
        return DataResult(uris, uploads)

    def train(self, request: TrainRequest) -> TrainResult:
        from . import training

        name = request.attach or request.name or job_name("dogbreed")
        if not request.attach:
            channels = dataset.load_s3_channels(self.workdir)
            training.submit(self.settings, self.client, name, dict(request.hyperparameters), channels,
                            spot=request.spot, debugger=request.debugger, keep_alive=request.keep_alive,
                            report=self.report)
            (self.workdir / LAST_JOB).parent.mkdir(parents=True, exist_ok=True)
            (self.workdir / LAST_JOB).write_text(name + "\n")
            if not request.wait:
                return TrainResult(name, waited=False)
        job = training.wait_training(self.client, name,
                                     lambda line: self.report.line(f"train: {line}"))
        return training.collect(self.session, job, self.workdir / "runs" / name, self.report)

    def tune(self, request: TuneRequest) -> TuneResult:
        from . import tuning

        name = request.attach or request.setup.name or job_name("dogbreed-tune")
        setup = replace(request.setup, name=name)
        if request.attach:
            self.report.line(f"tune: waiting for the SageMaker tuning job {name}")
        else:
            channels = dataset.load_s3_channels(self.workdir)
            tuning.submit(self.settings, self.client, setup, name, channels, self.report,
                          keep_alive=request.keep_alive)
            if not request.wait:
                return TuneResult(name, waited=False)
        return tuning.collect(self.client, name, dict(setup.fixed),
                              self.workdir / "tuning" / name, self.report)

    def deploy(self, request: DeployRequest) -> DeployResult:
        from . import hosting, packages, scaling

        autoscale = scaling.requested(request)  # refused before anything is created
        if request.package and (request.job or request.model_data):
            raise AwsError("deploy a model package (--package) or a model (--job, --model-data), not both")
        name = request.name or hosting.DEFAULT_NAME
        package = request.package and packages.approved_arn(self.client, request.package, request.group)
        data = package or request.model_data or hosting.model_data(self.client,
                                                                   self._deployed_job(request.job))
        answers = self.settings.s3_uri("async", name) if request.use_async else None
        capture = (hosting.Capture(request.capture_percent, self.settings.s3_uri("capture", name))
                   if request.capture_percent else None)
        spec = hosting.Hosting(request.instance_type or self.settings.endpoint_instance_type,
                               request.instance_count, request.serverless_memory, request.max_concurrency,
                               environment=dict(request.environment), ami_version=request.ami_version,
                               async_output=answers, capture=capture)
        self.report.line(f"deploy: {data} to endpoint {name!r} ({spec.describe()})")
        hosting.deploy(self.settings, self.client, data, name, spec, status_changes(self.report, "deploy"),
                       package=package)
        if autoscale:
            self._autoscale(name, autoscale)
        return DeployResult(name, data)

    def _autoscale(self, name: str, autoscale: Any) -> None:
        from botocore.exceptions import ClientError

        from . import scaling

        try:
            for line in scaling.apply(self.session.client("application-autoscaling"),
                                      self.session.client("cloudwatch"), name, autoscale,
                                      self.settings.resource_tags()):
                self.report.line(f"deploy: autoscaling: {line}")
        except ClientError as exc:
            raise AwsError(f"endpoint {name!r} is in service, but its autoscaling was refused: {exc} "
                           f"(`dogctl teardown --sagemaker --name {name}` removes it all)") from exc

    def transform(self, request: TransformRequest) -> TransformResult:
        """A batch transform job over an S3 prefix of photos; outputs downloaded and summarised."""
        from . import hosting
        from . import transform as batch

        client = self.client
        name = request.attach or request.name or job_name("dogbreed-transform")
        if not request.attach:
            data = request.model_data or hosting.model_data(client, self._deployed_job(request.job))
            source = batch.input_uri(self.settings, self.workdir, request, name, self.report)
            job = batch.TransformJob(name, data, source, self.settings.s3_uri("transform", name, "output"),
                                     request.instance_type or batch.DEFAULT_INSTANCE, request.instance_count,
                                     request.max_payload, dict(request.environment))
            batch.start(self.settings, self.client, job)
            batch.report_submitted(job, self.report)
            if not request.wait:
                return TransformResult(name, waited=False)
        described = batch.wait(client, name, status_changes(self.report, "transform"))
        if batch.delete_model(client, name):
            self.report.line(f"transform: model {name} deleted (the job has ended)")
        return batch.collect(self.session.client("s3"), name, described,
                             self.workdir / "transforms" / name / "output", self.report)

    def _deployed_job(self, job: str | None) -> str:
        last = self.workdir / LAST_JOB
        job = job or (last.read_text().strip() if last.is_file() else None)
        if not job:
            raise UserError("which model? pass --job TRAINING_JOB or --model-data s3://.../model.tar.gz "
                            "(or run `dogctl train --sagemaker` first)")
        return job

    def sender(self, request: EndpointRequest) -> Sender:
        from .hosting import DEFAULT_NAME, async_config, async_send, runtime_send

        name = request.name or DEFAULT_NAME
        if async_config(self.client, name):
            return Sender(async_send(self.session, name, self.settings.s3_uri("async", name, "input")),
                          f"SageMaker asynchronous endpoint {name} (each request through S3)")
        return Sender(runtime_send(self.session, name), f"SageMaker endpoint {name}")

    def teardown(self, request: EndpointRequest) -> TeardownResult:
        from botocore.exceptions import ClientError

        from . import scaling
        from .hosting import DEFAULT_NAME, teardown

        name = request.name or DEFAULT_NAME
        try:  # the scalable target first: it would keep resizing an endpoint being deleted
            removed = scaling.remove(self.session.client("application-autoscaling"),
                                     self.session.client("cloudwatch"), name)
        except ClientError as exc:
            self.report.line(f"teardown: cannot check the endpoint's autoscaling ({exc}); going on")
            removed = []
        return TeardownResult(name, (*removed, *teardown(self.client, name)))

    def resources(self, request: ResourcesRequest) -> ResourcesResult:
        """Endpoints, jobs in progress and warm pools tagged managed-by=dogctl (and, unless
        ``request.every_prefix``, this settings' prefix)."""
        from .resources import Finder

        prefix = None if request.every_prefix else self.settings.prefix
        found = Finder(self.client, prefix, self.session.client("application-autoscaling")).all()
        scope = "any prefix" if prefix is None else f"prefix {prefix!r}"
        return ResourcesResult(f"SageMaker in {self.client.meta.region_name}, {scope}", found)

    def register(self, request: RegisterRequest) -> Package:
        """CreateModelPackage in ``request.group`` (created when missing), with the job's metrics
        and rule verdicts (the job's own, from its downloaded outputs, when `train` fetched them)."""
        from . import hosting, packages
        from .training import describe_training, job_verdicts

        job = None if request.model_data else self._deployed_job(request.job)
        described = describe_training(self.client, job) if job else None
        data = request.model_data or hosting.model_data(self.client, job)
        verdicts = job_verdicts(self.workdir / "runs" / job) if job else ()
        return packages.register(self.settings, self.session, self.client, request, data, described, verdicts)

    def review(self, request: ReviewRequest) -> Package:
        from . import packages

        return packages.review(self.client, request)

    def stop(self, request: StopRequest) -> StopResult:
        """StopTrainingJob, or StopHyperParameterTuningJob, for the job named ``request.job``."""
        from .training import stop

        kind, ended = stop(self.client, request.job)
        return StopResult(request.job, "ended" if ended else "stopping", kind=kind, status=ended)


__all__ = ["AwsError", "SageMakerBackend", "Settings", "job_name"]

"""What a dogctl backend is: the :class:`Backend` protocol, one method per verb, each taking a
typed request that the command line builds from its options and returning a typed result that
the command line prints (never an exit code).

Both backends implement it, :class:`orchestration.local.LocalBackend` (this machine) and
:class:`orchestration.sagemaker.SageMakerBackend`; this module imports neither. While a verb works,
a backend says what it is doing through its :class:`Reporter` (progress lines and bars); the
summary of what it did, and the exit code, are the command line's. Errors are
:class:`dogbreed.errors.UserError`, printed as one line.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO, runtime_checkable

from .progress import Progress

if TYPE_CHECKING:
    from dogbreed.debugger.verdicts import RuleResult

    from .invocation import Send
    from .transform import TransformSummary
    from .tuning import TuningSetup


class Reporter:
    """Where a backend's progress goes while it works: lines and progress bars, on ``stream``
    (default: the standard output of the moment). A test passes one on a StringIO to read them."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def bar(self, label: str, total: float | None = None, *, unit: str = "files") -> Progress:
        """``with reporter.bar("upload") as bar: bar.advance_to(done, total)``."""
        return Progress(label, total, unit=unit, stream=self.stream)


# Requests: what the command line asks for, from its options.

@dataclass(frozen=True)
class DataRequest:
    channels: Mapping[str, Path]  # the prepared splits (train, valid, test), local folders


@dataclass(frozen=True)
class TrainRequest:
    hyperparameters: Mapping[str, str]  # checked already
    name: str | None = None  # default: the backend's (train-<timestamp>, dogbreed-<timestamp>)
    hyperparameters_file: Path | None = None  # their file (a study's best: its trials go in the report)
    debugger: str = "container"  # container, managed or off
    debug_interval: int | None = None
    spot: bool = False
    keep_alive: int | None = None  # SageMaker: a warm pool kept this many seconds after the job
    wait: bool = True
    attach: str | None = None  # follow this existing job instead of starting one


@dataclass(frozen=True)
class TuneRequest:
    setup: TuningSetup  # an empty name: the backend's default (tune, dogbreed-tune-<timestamp>)
    wait: bool = True
    attach: str | None = None
    keep_alive: int | None = None  # SageMaker: each trial's warm pool, kept this many seconds


@dataclass(frozen=True)
class StopRequest:
    job: str


@dataclass(frozen=True)
class DeployRequest:
    name: str | None = None  # default: the backend's endpoint name
    model: Path | None = None  # locally: a model folder, /opt/ml tree or run folder (default: the newest)
    port: int = 8080
    workers: int | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    job: str | None = None  # SageMaker: the training job whose model (default: the last one)
    model_data: str | None = None  # SageMaker: a model.tar.gz in S3 instead
    instance_type: str | None = None
    instance_count: int = 1
    ami_version: str | None = None
    serverless_memory: int | None = None
    use_async: bool = False
    max_concurrency: int = 5
    capture_percent: int | None = None  # SageMaker: DataCaptureConfig, this share of requests
    package: str | None = None  # an approved model package instead (latest-approved, N, GROUP/N, ARN)
    group: str = "dogbreed"  # the package's model group, when not named in it
    autoscale: tuple[int, int] | None = None  # SageMaker: MIN..MAX instances (Application Auto Scaling)
    target_invocations: float | None = None  # ... tracking invocations per instance per minute
    target_backlog: float | None = None  # ... or, asynchronous endpoints, the backlog per instance


@dataclass(frozen=True)
class TransformRequest:
    name: str | None = None
    data: Path | None = None  # a folder of photos (default: the prepared dataset's split)
    split: str = "test"
    model: Path | None = None
    max_payload: int = 20  # MB
    environment: Mapping[str, str] = field(default_factory=dict)
    input: str | None = None  # SageMaker: an S3 prefix of photos
    job: str | None = None
    model_data: str | None = None
    instance_type: str | None = None
    instance_count: int = 1
    wait: bool = True
    attach: str | None = None


@dataclass(frozen=True)
class RegisterRequest:
    group: str = "dogbreed"  # the model group (created when missing)
    model: Path | None = None  # locally: model folder, /opt/ml tree or run folder (default: the newest)
    job: str | None = None  # SageMaker: the training job whose model (default: the last one)
    model_data: str | None = None  # SageMaker: a model.tar.gz in S3 instead
    description: str | None = None


@dataclass(frozen=True)
class ReviewRequest:
    package: str  # latest, N, GROUP/N, or a model package ARN
    approve: bool  # True: Approved; False: Rejected
    group: str = "dogbreed"
    note: str | None = None  # the approval's description


@dataclass(frozen=True)
class ResourcesRequest:
    every_prefix: bool = False  # SageMaker: what dogctl made under any prefix, not only this settings'


@dataclass(frozen=True)
class EndpointRequest:
    name: str | None = None  # default: the backend's endpoint name


# Results: what was done, for the command line to print.

@dataclass(frozen=True)
class Upload:
    uri: str
    uploaded: int
    unchanged: int


@dataclass(frozen=True)
class DataResult:
    channels: Mapping[str, str]  # where jobs read each split: a local folder or an S3 prefix
    uploads: Mapping[str, Upload] = field(default_factory=dict)  # by split, when uploaded


@dataclass(frozen=True)
class RuleStatus:
    """A SageMaker Debugger rule's evaluation."""

    name: str
    status: str
    details: str = ""


@dataclass(frozen=True)
class TrainResult:
    job: str  # the run's or the training job's name
    waited: bool = True  # False: submitted only (--no-wait)
    ok: bool = True
    status: str | None = None  # a SageMaker job's status (Completed, Failed, Stopped)
    failure: str | None = None  # why it failed
    log: Path | None = None  # a local run's full log
    seconds: float | None = None
    model_dir: Path | None = None
    selected_epoch: int | None = None
    scores: Mapping[str, float] = field(default_factory=dict)  # the kept epoch's
    report: Path | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)  # a SageMaker job's final metrics
    rules: tuple[RuleStatus, ...] = ()
    downloads: Mapping[str, str] = field(default_factory=dict)  # part -> the S3 URI it came from
    outputs: Path | None = None  # where a SageMaker job's outputs were downloaded
    verdicts: tuple[RuleResult, ...] = ()  # the job's own rules' (the in-container Debugger)


@dataclass(frozen=True)
class TuneResult:
    name: str
    waited: bool = True
    headline: str = ""
    objective: str = "valid_acc"
    trials: tuple[Mapping[str, Any], ...] = ()  # tuning.json's rows
    best: Mapping[str, Any] | None = None
    best_file: Path | None = None


@dataclass(frozen=True)
class StopResult:
    job: str
    state: Literal["stopped", "stopping", "gone", "ended"]  # gone: its dogctl was; ended: before the stop
    kind: str | None = None  # SageMaker: training job or tuning job
    status: str | None = None  # SageMaker: the status it had ended with
    pid: int | None = None  # locally: the dogctl that ran it


@dataclass(frozen=True)
class DeployResult:
    name: str
    model: str  # the model folder or model.tar.gz URI
    url: str | None = None  # a local endpoint's
    log: Path | None = None  # a local endpoint's server log


@dataclass(frozen=True)
class TransformResult:
    name: str
    waited: bool = True
    status: str | None = None  # a SageMaker job's (Completed, Failed, Stopped)
    reason: str | None = None  # why a SageMaker job did not complete
    summary: TransformSummary | None = None
    output: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status in (None, "Completed") and not (self.summary and self.summary.failed)


@dataclass(frozen=True)
class Sender:
    """How to send requests to an endpoint (for invoke and evaluate)."""

    send: Send
    where: str  # for the user: the URL or the endpoint
    classes: list[str] | None = None  # the model's, when known


@dataclass(frozen=True)
class Resource:
    """Something dogctl started that is still running or billing (`dogctl resources`)."""

    kind: str  # endpoint, training job, warm pool, tuning job, transform job; locally: training run, study
    name: str
    status: str
    detail: str = ""  # what it runs on: instances, serverless memory, a URL
    since: float | None = None  # when it was created (a warm pool: when its job ended), epoch seconds


@dataclass(frozen=True)
class Package:
    """One version of a model group in the registry."""

    id: str  # a SageMaker ARN, or GROUP/VERSION locally
    group: str
    version: int
    status: str  # PendingManualApproval, Approved, Rejected
    model: str  # the model folder or model.tar.gz URI
    metrics: Mapping[str, float] = field(default_factory=dict)  # the job's final metrics
    rules: Mapping[str, str] = field(default_factory=dict)  # rule -> verdict, when known
    previous: str | None = None  # after a review: the status it had


@dataclass(frozen=True)
class ResourcesResult:
    where: str  # for the user: this machine's workdir, or the account, region and prefix
    found: tuple[Resource, ...] = ()


@dataclass(frozen=True)
class TeardownResult:
    name: str
    deleted: tuple[str, ...] = ()  # what went (locally: the endpoint, if it was running)


VERBS = ("data", "train", "tune", "stop", "deploy", "transform", "sender", "teardown", "resources",
         "register", "review")


@runtime_checkable
class Backend(Protocol):
    """The verbs of the workflow, somewhere: each takes a request and returns a result."""

    name: str  # local, sagemaker
    workdir: Path

    def data(self, request: DataRequest) -> DataResult:
        """Make the prepared splits available as channels (SageMaker: uploaded to S3)."""
        ...

    def train(self, request: TrainRequest) -> TrainResult:
        ...

    def tune(self, request: TuneRequest) -> TuneResult:
        ...

    def stop(self, request: StopRequest) -> StopResult:
        """Stop a running training run or study (its checkpoints kept)."""
        ...

    def deploy(self, request: DeployRequest) -> DeployResult:
        ...

    def transform(self, request: TransformRequest) -> TransformResult:
        ...

    def sender(self, request: EndpointRequest) -> Sender:
        """How to reach the endpoint ``request.name`` (for invoke and evaluate)."""
        ...

    def teardown(self, request: EndpointRequest) -> TeardownResult:
        ...

    def resources(self, request: ResourcesRequest) -> ResourcesResult:
        """What dogctl started that still runs or bills (SageMaker: found by its tags)."""
        ...

    def register(self, request: RegisterRequest) -> Package:
        """A trained model as a new version of its model group, PendingManualApproval."""
        ...

    def review(self, request: ReviewRequest) -> Package:
        """Approve or reject a model package (deploy --package takes approved ones only)."""
        ...

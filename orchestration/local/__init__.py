"""The local backend: every verb on this machine, no AWS. `train` runs in the image when a
container engine has it, as a process otherwise (:mod:`.runner`, :mod:`.training`); tuning is an
Optuna study (:mod:`.tuning`); the endpoint is the real `serve` on a local port (:mod:`.hosting`),
and a batch transform goes through it (:mod:`.transform`)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import psutil

from dogbreed.contract.artifact import ModelArtifact
from dogbreed.contract.environment import FEATURE_CACHE as ENV_FEATURE_CACHE
from dogbreed.contract.hyperparameters import describe_tune, parse
from dogbreed.contract.jobdir import REPORT_FILE, TUNING_FILE
from dogbreed.debugger.hook import save_interval
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
    Resource,
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
)
from ..packages import must_be_approved
from . import hosting, packages, runner, training, tuning

PID_FILE = "dogctl.pid"  # in a run or study folder while dogctl works on it: `dogctl stop` reads it
FEATURE_CACHE = "feature-cache"  # under the workdir: the backbone features runs share (finetune=head)
STOP_WAIT_SECONDS = 120


@contextmanager
def _claimed(folder: Path) -> Iterator[None]:
    """Mark ``folder`` as worked on by this process (for `dogctl stop`) until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    pid_file = folder / PID_FILE
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        pid_file.unlink(missing_ok=True)


def _refuse_if_running(folder: Path, what: str) -> None:
    """Two dogctl processes must not drive one study (or run) at once."""
    pid_file = folder / PID_FILE
    if pid_file.is_file():
        pid = _pid(pid_file)
        if pid != os.getpid() and _alive(pid):
            raise UserError(f"{what} is running already (dogctl pid {pid}): wait, or "
                            f"`dogctl stop {folder.name}`")


CLAIMED = (("runs", "training run"), ("tuning", "study"))  # the folders dogctl marks, and what each holds


def _pid(pid_file: Path) -> int:
    return int(pid_file.read_text().split()[0])


def _claims(workdir: Path) -> list[tuple[str, Path]]:
    """(kind, pid file) of every run and study folder a dogctl marked under ``workdir``."""
    return [(kind, pid_file) for folder, kind in CLAIMED
            for pid_file in sorted((workdir / folder).glob(f"*/{PID_FILE}"))]


def _alive(pid: int) -> bool:
    """Running (a zombie, ended but not yet reaped by its parent, is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False



def _debugger(request: TrainRequest, hyperparameters: dict[str, str], train_images: int,
              report: Reporter) -> dict[str, str]:
    """The hyperparameters that turn the in-job Debugger on (what --sagemaker sends too)."""
    params = parse({**hyperparameters, "debugger": "true"})
    steps = params.steps(train_images)
    interval = save_interval(steps, request.debug_interval or params.debug_interval)
    report.line(f"train: debugger on: tensors at steps 0-9 and every {interval} steps "
                f"(of {steps}), losses at every step")
    return {"debugger": "true", "debug_interval": str(interval)}


def _copy_trials(hyperparameters_file: Path | None, run_dir: Path) -> None:
    """Hyperparameters from a tuning study: its trials go into this run's report."""
    if hyperparameters_file is None:
        return
    trials = Path(hyperparameters_file).with_name(TUNING_FILE)
    if trials.is_file():
        out = run_dir / "opt_ml" / "output" / "data"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(trials, out / TUNING_FILE)


class LocalBackend(Backend):
    """The workflow's verbs on this machine. ``runner`` and ``local_image``: where `train` runs
    (:func:`.runner.choose`); ``reporter``: where progress goes."""

    name = "local"

    def __init__(self, workdir: Path, *, runner: str = "auto", local_image: str = runner.DEFAULT_IMAGE,
                 reporter: Reporter | None = None):
        self.workdir = Path(workdir)
        self.runner_kind, self.local_image = runner, local_image
        self.report = reporter or Reporter()

    def _runner(self) -> runner.Runner:
        return runner.choose(self.runner_kind, self.local_image)

    def feature_cache(self, hyperparameters: dict[str, str], verb: str) -> Path:
        """Where every run and trial keeps the frozen backbone's features: $DOGBREED_FEATURE_CACHE,
        else WORKDIR/feature-cache (said when it is used: finetune=head)."""
        folder = Path(os.environ.get(ENV_FEATURE_CACHE) or self.workdir / FEATURE_CACHE)
        params = parse(hyperparameters)
        if params.finetune == "head" and params.feature_views:
            self.report.line(f"{verb}: the frozen backbone's features are cached in {folder}, shared by "
                             "every run")
        return folder

    def data(self, request: DataRequest) -> DataResult:
        return DataResult({split: str(path) for split, path in request.channels.items()})  # as they are

    def train(self, request: TrainRequest) -> TrainResult:
        where = self._runner()
        prepared = dataset.load_prepared(self.workdir)
        run_dir = training.new_run_dir(self.workdir, "train", request.name)
        self.report.line(f"train: local run in {run_dir} on {prepared.name} "
                         f"({prepared.counts['train']} training images)")
        _copy_trials(request.hyperparameters_file, run_dir)
        hyperparameters = dict(request.hyperparameters)
        # The analysis runs in the job, as on SageMaker by default ("managed" means the same here).
        if request.debugger != "off":
            on = _debugger(request, hyperparameters, prepared.counts["train"], self.report)
            hyperparameters = {**on, **hyperparameters}
        self.report.line(f"train: running {where.describe()}")
        with _claimed(run_dir):
            result = training.run_training(run_dir, prepared.channels, hyperparameters, runner=where,
                                           on_line=self.report.line,
                                           feature_cache=self.feature_cache(hyperparameters, "train"))
        if not result.ok:
            return TrainResult(run_dir.name, ok=False, failure=result.failure(), seconds=result.seconds,
                               log=run_dir / "train.log")
        meta = result.artifact().metadata
        report = result.opt_ml.output_data_dir / REPORT_FILE
        return TrainResult(run_dir.name, seconds=result.seconds, model_dir=result.opt_ml.model_dir,
                           selected_epoch=meta.selected_epoch, scores=dict(meta.scores),
                           report=report if report.is_file() else None, log=run_dir / "train.log")

    def tune(self, request: TuneRequest) -> TuneResult:
        where = self._runner()
        prepared = dataset.load_prepared(self.workdir)
        setup = replace(request.setup, name=request.setup.name or "tune")
        self.report.line(f"tune: study {setup.name!r}: {setup.trials} trials, {setup.parallel} in parallel, "
                         f"TPE sampler with median pruning, objective valid_acc, on {prepared.name}")
        for param, tune in setup.space().items():
            self.report.line(f"  {param}: {describe_tune(tune)}")
        self.report.line(f"tune: trials run {where.describe()}")
        folder = self.workdir / "tuning" / setup.name
        _refuse_if_running(folder, f"study {setup.name!r}")
        with _claimed(folder):
            summary = tuning.run_study(self.workdir, prepared.channels, setup, runner=where,
                                       emit=self.report.line,
                                       feature_cache=self.feature_cache(dict(setup.fixed), "tune"))
        return TuneResult(setup.name, headline=f"study {setup.name!r}: {len(summary['trials'])} trials",
                          objective=summary["objective"], trials=tuple(summary["trials"]),
                          best=summary["best"], best_file=summary["best_file"] and Path(summary["best_file"]))

    def _model(self, model: Path | None) -> Path:
        return hosting.model_folder(model) if model else hosting.newest_model(self.workdir)

    def register(self, request: RegisterRequest) -> Package:
        """The model folder as the next version of its group in WORKDIR/registry/GROUP.json."""
        return packages.register(self.workdir, self._model(request.model), request)

    def review(self, request: ReviewRequest) -> Package:
        return packages.review(self.workdir, request)

    def deploy(self, request: DeployRequest) -> DeployResult:
        if request.autoscale:
            raise UserError("--autoscale scales SageMaker endpoints (--sagemaker); a local endpoint's "
                            "size is --workers")
        if request.package and request.model:
            raise UserError("deploy a model package (--package) or a model (--model), not both")
        if request.package:
            package, _ = packages.find(self.workdir, request.package, request.group)
            must_be_approved(package.id, package.status)
            model = Path(package.model)
        else:
            model = self._model(request.model)
        name = request.name or hosting.DEFAULT_NAME
        self.report.line(f"deploy: starting serve on {model} (port {request.port})")
        ep = hosting.deploy(self.workdir, model, name=name, port=request.port, workers=request.workers,
                            environment=dict(request.environment))
        return DeployResult(ep.name, str(model), url=ep.url, log=Path(ep.log))

    def transform(self, request: TransformRequest) -> TransformResult:
        """What a SageMaker transform job does, through the real `serve` on this machine."""
        from ..transform import photos, summarise
        from . import transform as batch

        model = self._model(request.model)
        data = request.data or dataset.load_prepared(self.workdir).channels.get(request.split)
        if data is None:
            raise UserError(f"the prepared dataset has no {request.split!r} split: pass --data FOLDER")
        name = request.name or time.strftime("transform-%Y%m%d-%H%M%S")
        folder = self.workdir / "transforms" / name
        if folder.exists():
            raise UserError(f"{folder} exists already: pick another --name")
        inputs = photos(Path(data))
        output = folder / "output"
        output.mkdir(parents=True)
        self.report.line(f"transform: {len(inputs)} photos from {data} through {model}")
        with self.report.bar("transform", len(inputs), unit="photos") as bar:
            failures = batch.run(self.workdir, model, Path(data), inputs, output, name=name,
                                 max_payload_mb=request.max_payload, environment=dict(request.environment),
                                 progress=bar.advance_to, emit=self.report.line)
        return TransformResult(name, summary=summarise(inputs, output, failures), output=output)

    def sender(self, request: EndpointRequest) -> Sender:
        ep = hosting.ready(hosting.Endpoint.load(self.workdir, request.name or hosting.DEFAULT_NAME))
        return Sender(hosting.http_send(ep.url), ep.url, ModelArtifact.read(Path(ep.model_dir)).classes)

    def teardown(self, request: EndpointRequest) -> TeardownResult:
        name = request.name or hosting.DEFAULT_NAME
        stopped = hosting.teardown(self.workdir, name)
        return TeardownResult(name, (f"endpoint {name}",) if stopped else ())

    def resources(self, request: ResourcesRequest) -> ResourcesResult:
        """Running endpoints (their `serve`) and the training runs and studies a dogctl is
        working on, under this workdir."""
        found = [Resource("endpoint", ep.name, "running", ep.url, ep.started)
                 for ep in hosting.endpoints(self.workdir) if ep.alive()]
        for kind, pid_file in _claims(self.workdir):
            if _alive(pid := _pid(pid_file)):
                found.append(Resource(kind, pid_file.parent.name, "running", f"dogctl pid {pid}",
                                      pid_file.stat().st_mtime))
        return ResourcesResult(f"this machine, {self.workdir}", tuple(found))

    def stop(self, request: StopRequest) -> StopResult:
        """SIGTERM to the dogctl that runs training run or study ``request.job``: it stops its
        `train` runs (checkpoints kept) and exits; wait for that."""
        job = request.job
        folders = [self.workdir / folder / job for folder, _ in CLAIMED]
        claimed = [f / PID_FILE for f in folders if (f / PID_FILE).is_file()]
        if not claimed:
            known = sorted(pid_file.parent.name for _, pid_file in _claims(self.workdir))
            raise UserError(f"nothing named {job!r} is running under {self.workdir}"
                            + (f"; running: {', '.join(known)}" if known else ""))
        pid = _pid(claimed[0])
        if not _alive(pid):
            claimed[0].unlink(missing_ok=True)
            return StopResult(job, "gone", pid=pid)
        os.kill(pid, signal.SIGTERM)
        self.report.line(f"stop: asked {job!r} to stop (SIGTERM to dogctl pid {pid}); waiting")
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            raise UserError(f"{job!r} (pid {pid}) still runs after {STOP_WAIT_SECONDS}s")
        return StopResult(job, "stopped", pid=pid)

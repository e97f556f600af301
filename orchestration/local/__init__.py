"""The local backend: every verb on this machine, no AWS. `train` runs in the image when a
container engine has it, as a process otherwise (:mod:`.runner`, :mod:`.training`); tuning is an
Optuna study (:mod:`.tuning`); the endpoint is the real `serve` on a local port (:mod:`.hosting`),
and a batch transform goes through it (:mod:`.transform`)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from dogbreed.contract.artifact import ModelArtifact
from dogbreed.contract.environment import FEATURE_CACHE as ENV_FEATURE_CACHE
from dogbreed.contract.hyperparameters import describe_tune, parse
from dogbreed.contract.jobdir import REPORT_FILE, TUNING_FILE
from dogbreed.debugger.hook import save_interval
from dogbreed.errors import UserError

from .. import dataset
from ..invocation import Send
from ..tuning import TuningSetup
from . import hosting, runner, training, tuning

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
        pid = int(pid_file.read_text().split()[0])
        if pid != os.getpid() and _alive(pid):
            raise UserError(f"{what} is running already (dogctl pid {pid}): wait, or "
                            f"`dogctl stop {folder.name}`")


def _alive(pid: int) -> bool:
    """Running (a zombie, ended but not yet reaped by its parent, is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class LocalBackend:
    """The workflow's verbs on this machine; ``args`` are the parsed command line."""

    name = "local"

    def __init__(self, args: argparse.Namespace):
        self.workdir: Path = args.workdir

    def _runner(self, args: argparse.Namespace) -> runner.Runner:
        return runner.choose(args.runner, args.local_image)

    def feature_cache(self, hyperparameters: dict[str, str], verb: str) -> Path:
        """Where every run and trial keeps the frozen backbone's features: $DOGBREED_FEATURE_CACHE,
        else WORKDIR/feature-cache (said when it is used: finetune=head)."""
        folder = Path(os.environ.get(ENV_FEATURE_CACHE) or self.workdir / FEATURE_CACHE)
        params = parse(hyperparameters)
        if params.finetune == "head" and params.feature_views:
            print(f"{verb}: the frozen backbone's features are cached in {folder}, shared by every run",
                  flush=True)
        return folder

    def data(self, args: argparse.Namespace, prepared: dataset.Prepared) -> int:
        return 0  # the prepared folders are the channels

    def train(self, args: argparse.Namespace, hyperparameters: dict[str, str]) -> int:
        where = self._runner(args)
        prepared = dataset.load_prepared(self.workdir)
        run_dir = training.new_run_dir(self.workdir, "train", args.name)
        print(f"train: local run in {run_dir} on {prepared.name} "
              f"({prepared.counts['train']} training images)", flush=True)
        if args.hyperparameters:  # from a tuning study: its trials go into this run's report
            trials = Path(args.hyperparameters).with_name(TUNING_FILE)
            if trials.is_file():
                out = run_dir / "opt_ml" / "output" / "data"
                out.mkdir(parents=True, exist_ok=True)
                shutil.copy2(trials, out / TUNING_FILE)
        # The analysis runs in the job, as on SageMaker by default ("managed" means the same here).
        if args.debugger != "off":
            hyperparameters = {**self._debugger(args, hyperparameters, prepared), **hyperparameters}
        print(f"train: running {where.describe()}", flush=True)
        with _claimed(run_dir):
            result = training.run_training(run_dir, prepared.channels, hyperparameters, runner=where,
                                           feature_cache=self.feature_cache(hyperparameters, "train"))
        if not result.ok:
            print(f"train: failed after {result.seconds:.0f}s: {result.failure()}", file=sys.stderr)
            print(f"train: full log in {run_dir / 'train.log'}", file=sys.stderr)
            return 1
        meta = result.artifact().metadata
        summary = ", ".join(f"{k} {v:.4f}" for k, v in meta.scores.items())
        print(f"train: done in {result.seconds:.0f}s; epoch {meta.selected_epoch} kept: {summary}")
        print(f"train: model in {result.opt_ml.model_dir}")
        report = result.opt_ml.output_data_dir / REPORT_FILE
        if report.is_file():
            print(f"train: report in {report}")
        return 0

    @staticmethod
    def _debugger(args: argparse.Namespace, hyperparameters: dict[str, str],
                  prepared: dataset.Prepared) -> dict[str, str]:
        """The hyperparameters that turn the in-job Debugger on (what --sagemaker sends too)."""
        params = parse({**hyperparameters, "debugger": "true"})
        steps = params.steps(prepared.counts["train"])
        interval = save_interval(steps, args.debug_interval or params.debug_interval)
        print(f"train: debugger on: tensors at steps 0-9 and every {interval} steps "
              f"(of {steps}), losses at every step", flush=True)
        return {"debugger": "true", "debug_interval": str(interval)}

    def tune(self, args: argparse.Namespace, setup: TuningSetup) -> dict:
        where = self._runner(args)
        prepared = dataset.load_prepared(self.workdir)
        print(f"tune: study {setup.name!r}: {setup.trials} trials, {setup.parallel} in parallel, TPE "
              f"sampler with median pruning, objective valid_acc, on {prepared.name}", flush=True)
        for param, tune in setup.space().items():
            print(f"  {param}: {describe_tune(tune)}")
        print(f"tune: trials run {where.describe()}", flush=True)
        folder = self.workdir / "tuning" / setup.name
        _refuse_if_running(folder, f"study {setup.name!r}")
        with _claimed(folder):
            summary = tuning.run_study(self.workdir, prepared.channels, setup, runner=where,
                                      emit=lambda line: print(line, flush=True),
                                      feature_cache=self.feature_cache(dict(setup.fixed), "tune"))
        summary["headline"] = f"study {setup.name!r}: {len(summary['trials'])} trials"
        return summary

    def deploy(self, args: argparse.Namespace) -> int:
        model = hosting.model_folder(args.model) if args.model else hosting.newest_model(self.workdir)
        name = args.name or hosting.DEFAULT_NAME
        print(f"deploy: starting serve on {model} (port {args.port})", flush=True)
        ep = hosting.deploy(self.workdir, model, name=name, port=args.port, workers=args.workers,
                             environment=dict(args.env))
        print(f"deploy: endpoint {ep.name!r} ready at {ep.url} (log {ep.log}); `dogctl teardown` stops it")
        return 0

    def transform(self, args: argparse.Namespace) -> int:
        """What a SageMaker transform job does, through the real `serve` on this machine."""
        from ..progress import Progress
        from ..transform import format_summary, photos, summarise
        from . import transform as batch

        model = hosting.model_folder(args.model) if args.model else hosting.newest_model(self.workdir)
        data = args.data or dataset.load_prepared(self.workdir).channels.get(args.split)
        if data is None:
            raise UserError(f"the prepared dataset has no {args.split!r} split: pass --data FOLDER")
        name = args.name or time.strftime("transform-%Y%m%d-%H%M%S")
        folder = self.workdir / "transforms" / name
        if folder.exists():
            raise UserError(f"{folder} exists already: pick another --name")
        inputs = photos(Path(data))
        output = folder / "output"
        output.mkdir(parents=True)
        print(f"transform: {len(inputs)} photos from {data} through {model}", flush=True)
        with Progress("transform", len(inputs), unit="photos", stream=sys.stdout) as bar:
            failures = batch.run(self.workdir, model, Path(data), inputs, output, name=name,
                                 max_payload_mb=args.max_payload, environment=dict(args.env),
                                 progress=bar.advance_to, emit=lambda line: print(line, flush=True))
        summary = summarise(inputs, output, failures)
        print(format_summary(summary, output))
        return 1 if summary.failed else 0

    def sender(self, args: argparse.Namespace) -> tuple[Send, str, list[str] | None]:
        ep = hosting.ready(hosting.Endpoint.load(self.workdir, args.name or hosting.DEFAULT_NAME))
        return hosting.http_send(ep.url), ep.url, ModelArtifact.read(Path(ep.model_dir)).classes

    def teardown(self, args: argparse.Namespace) -> int:
        name = args.name or hosting.DEFAULT_NAME
        stopped = hosting.teardown(self.workdir, name)
        print(f"teardown: endpoint {name!r} " + ("stopped" if stopped else "was not running"))
        return 0

    def stop(self, args: argparse.Namespace) -> int:
        """SIGTERM to the dogctl that runs training run or study ``args.job``: it stops its
        `train` runs (checkpoints kept) and exits; wait for that."""
        folders = [self.workdir / "runs" / args.job, self.workdir / "tuning" / args.job]
        claimed = [f / PID_FILE for f in folders if (f / PID_FILE).is_file()]
        if not claimed:
            known = sorted(p.parent.name for f in ("runs", "tuning")
                           for p in (self.workdir / f).glob(f"*/{PID_FILE}"))
            raise UserError(f"nothing named {args.job!r} is running under {self.workdir}"
                            + (f"; running: {', '.join(known)}" if known else ""))
        pid = int(claimed[0].read_text().split()[0])
        if not _alive(pid):
            claimed[0].unlink(missing_ok=True)
            print(f"stop: {args.job!r} was not running any more (its dogctl, pid {pid}, is gone)")
            return 0
        os.kill(pid, signal.SIGTERM)
        print(f"stop: asked {args.job!r} to stop (SIGTERM to dogctl pid {pid}); waiting", flush=True)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            raise UserError(f"{args.job!r} (pid {pid}) still runs after {STOP_WAIT_SECONDS}s")
        print(f"stop: {args.job!r} stopped; its checkpoints are kept (the same command resumes it)")
        return 0

"""``train``: fine-tune ResNet18 on the image folders of SageMaker's /opt/ml contract.

What SageMaker runs as ``docker run IMAGE train``. Reads hyperparameters and
channels from /opt/ml (or ``$SAGEMAKER_BASE_DIR``), prints one metric line per epoch,
checkpoints every epoch and resumes from the newest checkpoint, writes the
model to /opt/ml/model and, on any error, a one-line reason to
/opt/ml/output/failure before exiting non-zero.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import traceback
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing import SignalException

from dogbreed.contract import environment
from dogbreed.contract.environment import TrainingEnvironment
from dogbreed.contract.hyperparameters import Hyperparameters, parse
from dogbreed.contract.opt_ml import ContractError, OptML
from dogbreed.errors import UserError
from dogbreed.model.hardware import processes_per_host
from dogbreed.train.distributed import WorkerFailed, World, launch, record_failure, worker_world
from dogbreed.train.toolkit import hand_over, user_program
from dogbreed.train.trainer import Trainer, TrainingStopped

log = logging.getLogger("dogbreed.train")
# Failures whose message is the whole story: reported as they are, without a traceback.
EXPLAINED = (UserError, WorkerFailed)


def setup_logging(world: World | None = None) -> None:
    rank = world.rank if world else 0
    prefix = f"[rank {rank}] " if world and world.distributed else ""
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s %(levelname)s {prefix}%(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stdout,
        force=True,
    )



def describe_failure(exc: BaseException) -> str:
    """The one-line reason written first in the failure file."""
    if isinstance(exc, EXPLAINED):
        return str(exc)
    if isinstance(exc, TrainingStopped):
        return ("training stopped by SIGTERM (job stopped, time limit, early-stopped trial or spot "
                "capacity reclaimed); " + (f"{exc.saved}; " if exc.saved else "") +
                "the checkpoints let a restart carry on")
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "GPU out of memory: lower batch_size (or image_size)"
    if isinstance(exc, MemoryError):
        return "out of host memory: lower batch_size or workers"
    return f"internal error: {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    def handler(_signum: int, _frame: object) -> None:
        raise TrainingStopped()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parse(opt: OptML, world: World) -> Hyperparameters:
    ignored: list[str] = []
    params = parse(opt.raw_hyperparameters(), ignored=ignored)
    if ignored and world.is_main:
        log.info("ignoring hyperparameters reserved by SageMaker: %s", ", ".join(ignored))
    return params


def _launch_or_train(opt: OptML, env: TrainingEnvironment) -> None:
    params = _parse(opt, World())
    resources = opt.resource_config()
    nproc = processes_per_host(params.processes_per_host)
    if nproc * len(resources.hosts) == 1:
        Trainer(opt, params, World()).run()
        return
    launch(nproc, resources, env.master_addr, env.master_port)


def _user_program(opt: OptML, env: TrainingEnvironment) -> str | None:
    try:
        return user_program(opt, env.program)  # a script outside the source directory: refused
    except ContractError:
        return None  # an unreadable hyperparameters.json: the built-in trainer reports it


def report_failure(exc: BaseException, opt: OptML, world: World | None) -> int:
    """Write the failure file (or, in a worker, the error file its launcher reads), log the
    reason, and return the exit code: 143 after SIGTERM, else 1."""
    if isinstance(exc, (KeyboardInterrupt, SignalException)):
        exc = TrainingStopped()
    reason = describe_failure(exc)
    details = exc.details if isinstance(exc, WorkerFailed) else traceback.format_exc()
    if world is None:
        opt.write_failure(reason, details)
    else:  # the launcher reads it and writes the failure file
        record_failure(reason, details)
    if isinstance(exc, EXPLAINED + (TrainingStopped,)):
        log.error("training failed: %s", reason)
    else:
        log.error("training failed: %s\n%s", reason, details)
    return 143 if isinstance(exc, TrainingStopped) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train`` (SageMaker passes no arguments)."""
    if argv is None:
        argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        print(f"\nThe /opt/ml root is {OptML().root} (set {environment.BASE_DIR}, or "
              f"{environment.BASE_DIR_ALIAS}, to move it).")
        return 0
    opt = OptML(environment.base_dir())  # where the failure file goes, whatever else is wrong
    world = worker_world()
    setup_logging(world)
    try:
        env = TrainingEnvironment.read()  # the one read of the environment; a bad value fails here
        opt = OptML(env.base_dir, env.feature_cache, env.cache_by_content)
        if world is None and (program := _user_program(opt, env)):
            hand_over(opt, program)  # the toolkit exits with the script's outcome
        with stop_on_sigterm():
            if world is None:
                opt.clear_failure()
                opt.prepare_outputs()
                _launch_or_train(opt, env)
            else:
                Trainer(opt, _parse(opt, world), world).run()
    except BaseException as exc:  # every failure is reported, then the code returned
        if isinstance(exc, SystemExit):  # the toolkit's outcome, already reported
            raise
        return report_failure(exc, opt, world)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0

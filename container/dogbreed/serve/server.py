"""``serve``: gunicorn + Flask on port 8080, what SageMaker runs as ``docker run IMAGE serve``.

The master process imports the app (torch included) once; each worker loads the
model from /opt/ml/model (or ``$SAGEMAKER_BASE_DIR/model``, or ``--model-dir``) right after
it is forked, before it takes any request. Settings come from the variables
SageMaker and its SDK set, read once at start (dogbreed.contract.environment; a bad value stops
serve with one line naming it):

    SAGEMAKER_BIND_TO_PORT           port (default 8080)
    DOGBREED_BIND_HOST               address to listen on (default 0.0.0.0; dogctl's local ones: 127.0.0.1)
    SAGEMAKER_MODEL_SERVER_WORKERS   worker processes (default: 2 per GPU; on CPU, one per core,
                                     at most one per GiB of memory)
    SAGEMAKER_MODEL_SERVER_TIMEOUT   seconds a request may take (default 60)
    SAGEMAKER_MAX_PAYLOAD_IN_MB      request body limit (default 6; batch transform sets it)
    SAGEMAKER_BATCH_STRATEGY         what GET /execution-parameters reports (default MULTI_RECORD)
    DOGBREED_REQUIRE_GPU             true: stop when CUDA cannot use the host's GPUs (default:
                                     serve on the CPU, say why in the log and in /ping)
    DOGBREED_PRECISION               fp32 (default), or int8: the int8 model train wrote beside
                                     the weights, on the CPU (several times fp32's speed there)
    DOGBREED_SERVE_USER              started as root, the workers run as this user after loading
                                     the model (default dogbreed, the image's; root keeps root)

SIGTERM stops accepting, lets in-flight requests finish and exits within 25 s
(SageMaker allows 30).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

# Before torch loads OpenMP (GNU libgomp in torch's wheels): an idle thread team spins 10,000 times
# (about 0.1 ms, enough between the parallel regions of one forward pass), then sleeps, instead of
# spinning 3 ms on cores another worker needs (2 cores, 2 workers, concurrency 1: 25 req/s, against
# 14 with libgomp's default and 21 sleeping at once, OMP_WAIT_POLICY=PASSIVE).
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from dogbreed.contract import environment
from dogbreed.contract.environment import ServingEnvironment, SettingError
from dogbreed.contract.opt_ml import OptML
from dogbreed.model.hardware import cpu_count, nvidia_gpus
from dogbreed.serve.admission import Admission
from dogbreed.serve.app import CudaUnusable, ModelState, create_app
from dogbreed.serve.predictor import MAX_BATCH
from dogbreed.serve.threads import SharedThreads
from dogbreed.serve.user import WorkerUser, worker_user

# Per worker: WORKING requests decode or wait for the model at once (one batch in the forward
# pass while the next one decodes); up to ADMITTED - WORKING more wait their turn; the threads
# beyond ADMITTED are always left for /ping and for reading requests not yet admitted.
WORKING_PER_WORKER = 2 * MAX_BATCH
ADMITTED_PER_WORKER = 31  # requests a worker holds at once (more: 503 at once)
# Threads beyond those: /ping's, and those that read requests not yet admitted (serve/worker.py).
THREADS_PER_WORKER = ADMITTED_PER_WORKER + 9
GRACEFUL_SECONDS = 20
WORKER_MEMORY = 1 << 30  # a CPU worker's peak is about 0.5 GB (README, serving benchmark)
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(B)sB %(M)sms'
WORKER_BOOT_ERROR = 3  # gunicorn's exit code for "Worker failed to boot": the master halts


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 4 << 20


def return_freed_memory() -> None:
    """Have glibc mmap every allocation of 4 MB or more, so that a decoded photo's buffers go back
    to the system when freed. By default glibc raises that threshold after the first free and then
    keeps such buffers in per-thread arenas: a worker decoding one 62-megapixel photo at a time grew
    by 2.4 GB across its threads, 0.8 GB with this (tests/e2e/test_serve_abuse.py). Inherited by the
    workers at fork; a no-op where the C library is not glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


def gpu_count() -> int:
    """GPUs, counted through NVML without initialising CUDA in the master (workers are forked
    from it). Whether CUDA can use them is known only in a worker (see ModelState.load)."""
    if gpus := nvidia_gpus():
        return gpus.count
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_workers(gpus: int, cpus: int, memory: int | None = None) -> int:
    """2 per GPU; on the CPU one per core, at most one per GiB of ``memory`` (bytes; default:
    this host's). A CPU worker alone in a forward pass uses every core (dogbreed.serve.threads)."""
    if gpus:
        return 2 * gpus
    memory = memory if memory is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(cpus, memory // WORKER_MEMORY))


def gunicorn_options(state: ModelState, bind: str, workers: int, timeout: int,
                     gpus: int, require_gpu: bool = False,
                     user: WorkerUser | None = None) -> dict[str, Any]:
    cpus = cpu_count()
    started = time.monotonic()

    def post_fork(server: Any, worker: Any) -> None:
        """In each new worker, before it accepts: size torch's threads, load the model."""
        import torch

        torch.set_num_threads(max(1, cpus // workers))
        try:
            state.load(torch.device("cuda", worker.age % gpus) if gpus else torch.device("cpu"),
                       require_gpu=require_gpu)
        except CudaUnusable as exc:
            server.log.error("serve: %s", exc)
            sys.exit(WORKER_BOOT_ERROR)  # gunicorn stops instead of starting workers again

    def child_exit(server: Any, worker: Any) -> None:
        """In the master, when a worker has ended (even killed mid-pass): it is busy no more."""
        if state.threads is not None:
            state.threads.forget(worker.pid)

    def when_ready(server: Any) -> None:
        server.log.info("serve: listening on %s, %d worker(s) x %d requests at work (%d admitted, "
                        "%ds each), model %s (%.1fs)", bind, workers, WORKING_PER_WORKER,
                        ADMITTED_PER_WORKER, timeout, state.model_dir, time.monotonic() - started)
        if user is not None:
            server.log.info("serve: %s", user.reason)

    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": "dogbreed.serve.worker.Worker",  # gthread, slow clients bounded
        "threads": THREADS_PER_WORKER,
        "timeout": timeout,
        "graceful_timeout": GRACEFUL_SECONDS,
        "keepalive": 75,  # longer than the idle timeout of load balancers in front
        "preload_app": True,
        "post_fork": post_fork,
        "child_exit": child_exit,
        "when_ready": when_ready,
        "accesslog": "-",
        "errorlog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "proc_name": "dogbreed-serve",
        "control_socket_disable": True,  # gunicorn's admin socket: unused, and $HOME may be read-only
    }
    if user is not None and user.uid is not None:
        options["user"], options["group"] = user.uid, user.gid  # gunicorn switches each worker
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"  # heartbeat files off the container's overlay
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="model folder (default: /opt/ml/model, or $SAGEMAKER_BASE_DIR/model)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default: ${environment.PORT} or 8080)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"workers (default: ${environment.WORKERS})")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s [%(process)d] %(message)s")
    from gunicorn.app.base import BaseApplication

    try:
        settings = ServingEnvironment.read()
    except SettingError as exc:
        raise SystemExit(f"serve: {exc}") from None
    port = args.port or settings.port
    return_freed_memory()
    gpus = 0 if settings.precision == "int8" else gpu_count()  # int8 kernels run on the CPU
    workers = args.workers or settings.workers or default_workers(gpus, cpu_count())
    timeout = settings.timeout
    threads = SharedThreads(cpu_count(), slots=2 * workers)  # room for replacements of dead workers
    state = ModelState(args.model_dir or OptML(settings.base_dir).model_dir, settings.precision, threads)
    wsgi = create_app(state, Admission(ADMITTED_PER_WORKER, WORKING_PER_WORKER, timeout),
                      concurrency=workers * WORKING_PER_WORKER, settings=settings)
    host = settings.bind_host
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 address in brackets
    try:
        user = worker_user(settings.serve_user)
    except ValueError as exc:
        raise SystemExit(f"serve: {exc}") from None
    options = gunicorn_options(state, bind, workers, timeout, gpus, settings.require_gpu, user)

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return wsgi

    Server().run()
    return 0


"""`serve` against TorchServe on the same model, photo, machine and load generator, in one run.

    make bench-install      # once: TorchServe 0.12 and its archiver into .venv
                            # (bench/requirements-torchserve.txt), and Java 17 (Debian's
                            # openjdk-17-jre-headless) when `java` is missing; as root for apt
    .venv/bin/python bench/serve_vs_torchserve.py [--seconds 20] [--concurrency 1,4,16]
                            [--model-dir DIR | --train] [--classes 120] [--photo-size 450x664]

The model is a 120-class ResNet18 at 224 px in `train`'s format: randomly initialised and written
by ModelArtifact with its int8 model calibrated on the sample photos (speed does not depend on
the weights), or trained by the real `train` on
generated data with --train (minutes), or --model-dir's. The same weights are traced to
TorchScript and packed with torch-model-archiver into a .mar for TorchServe's built-in
``image_classifier`` handler (with an index_to_name.json), which is what SageMaker's PyTorch
inference containers run. In turn, each alone on the machine:

    serve      default layout, then SAGEMAKER_MODEL_SERVER_WORKERS=1, then the default layout
               with DOGBREED_PRECISION=int8 (gunicorn + Flask)
    TorchServe `torchserve --start --ncs` with its default workers, then with OMP_NUM_THREADS=1
               (free loopback ports in a config.properties, token authorisation off, its logs,
               pid file and temporary files in a folder of its own)
    forward passes alone, eager batch 1: fp32 with 1 process x all cores' threads and N processes
               x 1 thread, int8 with 1 process x all cores' threads

Every server gets the same keep-alive http.client load (bench/loadgen.py) with one JPEG body
(the sample photo of --photo-size pixels from ../shared/data/sample-images) for --seconds at
each concurrency, after a short warm-up. Reported: req/s and p99 latency, the time from the
process start to the first successful answer, and the peak memory of the server's whole process
tree (the sums of RSS and of PSS over its processes, sampled every 0.5 s while it runs). Every
server is stopped at the end, on errors and on Ctrl-C or SIGTERM too. Nothing is installed at
run time: the script stops with one line if TorchServe or Java is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.loadgen import (  # noqa: E402
    Run,
    TreeMemory,
    drive,
    first_answer,
    forward_passes,
    median_ms,
    photos,
    throwaway_model,
    tree,
    untrained_model,
)
from dogbreed.contract.artifact import ModelArtifact  # noqa: E402
from dogbreed.model.hardware import cpu_count  # noqa: E402
from dogbreed.serve.server import default_workers  # noqa: E402
from tests.helpers import Server, free_port  # noqa: E402

BIN = Path(sys.executable).parent
TORCHSERVE = BIN / "torchserve"
ARCHIVER = BIN / "torch-model-archiver"
MODEL_NAME = "dog"
# TorchServe's image_classifier handler resizes to 256 and crops 224, whatever the model.
HANDLER_SIZE = 224
# serve sets GOMP_SPINCOUNT when imported (this script imports it): TorchServe gets its own defaults.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
INSTALL = "run `make bench-install` (see bench/serve_vs_torchserve.py)"


def fail(message: str) -> SystemExit:
    return SystemExit(f"serve_vs_torchserve: {message}")


def java_version() -> str:
    """`java -version`'s first line; SystemExit when Java 17 or newer is not there."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).is_file():
        where = f"no bin/java in JAVA_HOME={home}" if home else "no java on PATH"
        raise fail(f"Java is missing ({where}): {INSTALL}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    line = (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else ""
    found = re.search(r'version "(\d+)', line)
    if out.returncode or not found or int(found.group(1)) < 17:
        raise fail(f"TorchServe 0.12 needs Java 17 or newer, {java} says {line!r}: {INSTALL}")
    return line


def check_torchserve() -> str:
    """TorchServe's version; SystemExit when it, its archiver or the handler's imports are missing."""
    for program in (TORCHSERVE, ARCHIVER):
        if not program.is_file():
            raise fail(f"{program.name} is not installed in {BIN.parent}: {INSTALL}")
    try:
        import captum  # noqa: F401 - the image_classifier handler imports it
    except ImportError:
        raise fail(f"captum (the image_classifier handler imports it) is missing: {INSTALL}") from None
    return importlib.metadata.version("torchserve")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def pick_photo(size: str) -> Path:
    """The sample photo of ``size`` (WIDTHxHEIGHT) pixels."""
    from PIL import Image

    width, height = (int(v) for v in size.lower().split("x"))
    for path in photos():
        with Image.open(path) as img:
            if img.size == (width, height):
                return path
    raise fail(f"no {size} photo among {len(photos())} in {photos()[0].parent}")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without thread-count variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    return {**env, **extra}


def stop_processes(procs: list[psutil.Process], timeout: float = 30, terminate: bool = False) -> None:
    """Wait for ``procs`` to end (after a SIGTERM with ``terminate``), then SIGKILL any left."""
    for proc in procs if terminate else []:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


def export_mar(model_dir: Path, folder: Path) -> Path:
    """Trace the model's weights to TorchScript and pack them with the image_classifier handler and
    an index_to_name.json into ``folder``/dog.mar; the model store (``folder``)."""
    import torch

    from dogbreed.serve.predictor import Predictor

    predictor = Predictor(model_dir)
    example = torch.rand(1, 3, HANDLER_SIZE, HANDLER_SIZE)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript
        traced = torch.jit.trace(predictor.model, example)
        if not torch.allclose(traced(example), predictor.model(example), atol=1e-4):
            raise fail("the TorchScript model does not give the eager model's outputs")
    folder.mkdir(parents=True, exist_ok=True)
    scripted = folder / "model.pt"
    traced.save(str(scripted))
    index = folder / "index_to_name.json"
    index.write_text(json.dumps({str(i): name for i, name in enumerate(predictor.breeds)}))
    subprocess.run([str(ARCHIVER), "--model-name", MODEL_NAME, "--version", "1.0", "--serialized-file",
                    str(scripted), "--handler", "image_classifier", "--extra-files", str(index),
                    "--export-path", str(folder), "--force"], check=True, capture_output=True)
    scripted.unlink()
    index.unlink()
    return folder


class TorchServe:
    """TorchServe as `torchserve --start --ncs` with the model ``dog``, in a session of its own
    and a folder of its own: config.properties (loopback ports picked free, token authorisation
    off), its logs, and TMPDIR/TEMP (its pid file, unpacked models, worker sockets)."""

    def __init__(self, store: Path, folder: Path, env: dict[str, str]):
        self.folder = folder
        tmp = folder / "tmp"
        tmp.mkdir(parents=True)
        self.port = free_port()
        ports = {"inference_address": f"http://127.0.0.1:{self.port}",
                 "management_address": f"http://127.0.0.1:{free_port()}",
                 "metrics_address": f"http://127.0.0.1:{free_port()}",
                 "grpc_inference_port": free_port(), "grpc_management_port": free_port()}
        config = folder / "config.properties"
        settings = {**ports, "disable_token_authorization": "true"}
        config.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.management = ports["management_address"]
        self.env = {**env, "TMPDIR": str(tmp), "TEMP": str(tmp), "LOG_LOCATION": str(folder / "logs"),
                    "METRICS_LOCATION": str(folder / "logs")}
        self.pid_file = tmp / ".model_server.pid"
        self.log_path = folder / "torchserve.out"
        self.java: psutil.Process | None = None
        self.started = time.monotonic()
        with open(self.log_path, "w") as log:
            self.session = subprocess.Popen(
                [str(TORCHSERVE), "--start", "--ncs", "--model-store", str(store), "--models",
                 f"{MODEL_NAME}={MODEL_NAME}.mar", "--ts-config", str(config), "--disable-token-auth"],
                cwd=folder, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if self.session.wait(timeout=120) != 0:
                raise fail(f"torchserve --start failed:\n{self.log()}")
            self.java = psutil.Process(int(self.pid_file.read_text()))
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int | None:
        return self.java.pid if self.java else None

    def alive(self) -> bool:
        try:
            return self.java is not None and self.java.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def log(self) -> str:
        text = self.log_path.read_text() if self.log_path.exists() else ""
        logs = self.folder / "logs"
        for name in ("ts_log.log", "model_log.log"):
            if (logs / name).exists():
                text += f"\n--- {name} (end)\n" + "\n".join((logs / name).read_text().splitlines()[-30:])
        return text

    def workers(self) -> int:
        """Workers of the model, as the management API describes it."""
        import urllib.request

        with urllib.request.urlopen(f"{self.management}/models/{MODEL_NAME}", timeout=10) as resp:
            return len(json.loads(resp.read())[0]["workers"])

    def stop(self) -> None:
        """`torchserve --stop` (SIGTERM to the JVM, which ends its workers); anything of the
        session left 30 s later is killed."""
        procs = [p for p in psutil.process_iter() if _session(p) == self.session.pid]
        stopped = False
        if self.java and self.alive():
            stopped = subprocess.run([str(TORCHSERVE), "--stop", "--foreground"], cwd=self.folder,
                                     env=self.env, capture_output=True, timeout=90).returncode == 0
        stop_processes(procs, terminate=not stopped)
        self.java = None


def _session(proc: psutil.Process) -> int | None:
    try:
        return os.getsid(proc.pid)
    except OSError:
        return None


@dataclass
class Started:
    """A server under way: where to send, its process tree's root, whether it lives, when it started."""

    port: int
    path: str
    pid: int | None
    alive: Callable[[], bool]
    started: float  # time.monotonic() when its process was started


@contextlib.contextmanager
def start_serve(model_dir: Path, folder: Path, workers: int | None, **env: str) -> Iterator[Started]:
    """The real `serve` with ``env``; ``workers`` None: SAGEMAKER_MODEL_SERVER_WORKERS unset (its
    default)."""
    log = folder / f"serve-{workers}-{'-'.join(env.values()) or 'default'}.log"
    server = Server(model_dir, workers=workers, env=clean_env(**env), log=log)
    procs: list[psutil.Process] = []

    def stop() -> None:
        procs.extend(tree(server.proc.pid))  # gunicorn and its workers, before they go
        server.stop()
        stop_processes(procs)

    try:
        yield Started(server.port, "/invocations", server.proc.pid, lambda: server.proc.poll() is None,
                      server.started)
    except Exception:
        print("--- serve's output (end)\n" + "\n".join(server.log().splitlines()[-30:]), file=sys.stderr)
        raise
    finally:
        stop()


@contextlib.contextmanager
def start_torchserve(store: Path, folder: Path, env: dict[str, str]) -> Iterator[tuple[Started, TorchServe]]:
    """TorchServe (see :class:`TorchServe`); its output is shown when something fails."""
    server = None
    try:
        server = TorchServe(store, folder, env)
        yield Started(server.port, f"/predictions/{MODEL_NAME}", server.pid, server.alive,
                      server.started), server
    except Exception:
        if server is not None:
            print(f"--- TorchServe's output\n{server.log()}", file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()


@dataclass
class Row:
    """One line of the table."""

    name: str
    runs: dict[int, Run] = field(default_factory=dict)
    ready: float | None = None
    memory: tuple[int, int] | None = None  # peak sums of (RSS, PSS) over the tree, bytes
    processes: int = 0


def measure(name: Callable[[], str], server: Started, body: bytes, args: argparse.Namespace) -> Row:
    """Wait for the first answer, name the row (``name()``), warm up, then drive ``server`` at each
    concurrency."""
    with TreeMemory(lambda: server.pid) as memory:
        ready = first_answer(server.port, body, server.started, server.alive, path=server.path)
        row = Row(name(), ready=ready)
        drive(server.port, [body], 2, seconds=args.warmup, path=server.path)
        for conc in args.concurrency:
            run = row.runs[conc] = drive(server.port, [body], conc, seconds=args.seconds, path=server.path)
            errors = f", {run.errors} errors (first: {run.first_error})" if run.errors else ""
            print(f"  {row.name}: c={conc} {run.rate:.1f} req/s, p99 {run.p99:.3f} s{errors}", flush=True)
        memory.sample()
    row.memory, row.processes = (memory.peak_rss, memory.peak_pss), memory.processes
    return row


def forward_row(name: str, model_dir: Path, body: bytes, processes: int, threads: int,
                args: argparse.Namespace, precision: str = "fp32") -> Row:
    run = forward_passes(model_dir, body, processes=processes, threads=threads, seconds=args.seconds,
                         precision=precision)
    print(f"  {name}: {run.rate:.1f} forward passes/s, p99 {run.p99:.3f} s", flush=True)
    return Row(name, {args.concurrency[0]: run})


def request_profile(model_dir: Path, body: bytes, threads: int, repeats: int = 30) -> dict[str, float]:
    """Median milliseconds of each in-process stage of one request (no HTTP): decoding the JPEG,
    resizing and cropping it, and the forward pass (normalisation, model, softmax) of fp32 and int8
    on the calling thread with ``threads`` threads."""

    import torch

    from dogbreed.data.images import decode
    from dogbreed.serve.predictor import Predictor

    torch.set_num_threads(threads)
    fp32, int8 = Predictor(model_dir), Predictor(model_dir, precision="int8")
    image = decode(body, fp32.decode_side)
    pixels = torch.from_numpy(fp32.transform.pixels(image))[None]
    stages: dict[str, Callable[[], object]] = {
        "decode": lambda: decode(body, fp32.decode_side),
        "resize + crop": lambda: fp32.transform.pixels(image),
        "forward fp32": lambda: fp32.forward(pixels),
        "forward int8": lambda: int8.forward(pixels)}
    return {name: median_ms(stage, repeats) for name, stage in stages.items()}


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM, like Ctrl-C, unwinds through the ``finally`` blocks that stop the servers."""
    raise KeyboardInterrupt


def torch_default_threads(env: dict[str, str]) -> int:
    """torch's intra-op threads in a fresh process with ``env`` (what a TorchServe worker gets)."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def cell(run: Run | None) -> str:
    if run is None:
        return "—"
    text = f"{run.rate:.1f} ({run.p99:.2f})"
    return text + (f" {run.errors} errors" if run.errors else "")


def table(rows: list[Row], concurrency: list[int]) -> str:
    heads = ["system", *(f"c={c} req/s (p99 s)" for c in concurrency), "start to first answer",
             "peak memory MB: RSS / PSS (processes)"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    for row in rows:
        ready = f"{row.ready:.1f} s" if row.ready is not None else "—"
        memory = (f"{row.memory[0] / 2**20:.0f} / {row.memory[1] / 2**20:.0f} ({row.processes})"
                  if row.memory else "—")
        lines.append("| " + " | ".join([row.name, *(cell(row.runs.get(c)) for c in concurrency), ready,
                                        memory]) + " |")
    return "\n".join(lines)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def comparisons(rows: dict[str, Row], concurrency: list[int], cpus: int) -> list[str]:
    """The ratio lines: serve (fp32 and int8) against tuned TorchServe at each concurrency, and
    against the forward passes alone."""
    def versus(key: str, other: str) -> str:
        mine, theirs = rows[key].runs, rows[other].runs
        return "; ".join(f"c={c} req/s x{ratio(mine[c].rate, theirs[c].rate)}, "
                         f"p99 x{ratio(mine[c].p99, theirs[c].p99)}" for c in concurrency)

    first, last = concurrency[0], concurrency[-1]
    lines = ["Ratios (req/s above 1 and p99 below 1: serve ahead):",
             f"- serve default vs TorchServe OMP_NUM_THREADS=1: {versus('serve', 'ts1')}",
             f"- serve int8 vs TorchServe OMP_NUM_THREADS=1: {versus('int8', 'ts1')}",
             f"- serve default vs TorchServe defaults: {versus('serve', 'ts')}"]
    for key, alone in (("serve", "alone"), ("int8", "alone_int8")):
        lines.append(f"- {key} at c={first} vs its forward passes alone (1 process x {cpus} threads): "
                     f"{ratio(rows[key].runs[first].rate, rows[alone].runs[first].rate)} of theirs")
    peer = rows["alone_n"].runs[first].rate
    shares = ", ".join(f"{rows[k].name.split(' (')[0]} {ratio(rows[k].runs[last].rate, peer)}"
                       for k in ("serve", "serve1", "ts", "ts1"))
    lines.append(f"- fp32 at c={last} vs fp32 forward passes alone ({cpus} processes x 1 thread): "
                 f"{shares}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="per concurrency (default 20)")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated (default 1,4,16)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds at concurrency 2 before measuring")
    parser.add_argument("--classes", type=int, default=120)
    parser.add_argument("--photo-size", default="450x664", help="WIDTHxHEIGHT of the sample photo to send")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-dir", type=Path, help="a model folder written by train (224 px)")
    source.add_argument("--train", action="store_true", help="train a throwaway model with the real train")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    command = shlex.join([sys.executable, *sys.argv])

    java = java_version()
    ts_version = check_torchserve()
    photo = pick_photo(args.photo_size)
    body = photo.read_bytes()
    signal.signal(signal.SIGTERM, interrupt)

    import torch

    cpus = cpu_count()
    serve_workers = default_workers(0, cpus)
    with tempfile.TemporaryDirectory(prefix="svt-") as tmp:
        work = Path(tmp)
        if args.model_dir:
            model_dir = ModelArtifact.locate(args.model_dir)
        elif args.train:
            print(f"training a throwaway {args.classes}-class model with train (minutes) ...", flush=True)
            model_dir = throwaway_model(HANDLER_SIZE, work / "train", classes=args.classes, per_class=1)
        else:
            model_dir = untrained_model(work / "model", args.classes, HANDLER_SIZE)
        meta = ModelArtifact.read(model_dir).metadata
        if meta.preprocessing.image_size != HANDLER_SIZE:
            raise fail(f"the model takes {meta.preprocessing.image_size} px; TorchServe's image_classifier "
                       f"crops {HANDLER_SIZE} px")
        store = export_mar(model_dir, work / "store")
        ts_threads = torch_default_threads(clean_env())
        names = {
            "serve": f"serve default ({serve_workers} workers, threads shared: {cpus} for a worker alone)",
            "serve1": f"serve SAGEMAKER_MODEL_SERVER_WORKERS=1 (1 x {cpus} threads)",
            "int8": "serve DOGBREED_PRECISION=int8 (default layout)",
            "ts": "TorchServe defaults ({} workers x {} threads)",
            "ts1": "TorchServe OMP_NUM_THREADS=1 ({} workers x 1 thread)",
            "alone": f"forward passes alone, eager fp32 batch 1 (1 process x {cpus} threads)",
            "alone_n": f"forward passes alone, eager fp32 batch 1 ({cpus} processes x 1 thread)",
            "alone_int8": f"forward passes alone, int8 batch 1 (1 process x {cpus} threads)",
        }
        print(f"model: ResNet18, {meta.num_classes} classes, {HANDLER_SIZE} px ({model_dir}); photo "
              f"{photo.name} ({args.photo_size}, {len(body) // 1000} KB); {args.seconds:g} s per point",
              flush=True)
        profile = request_profile(model_dir, body, cpus)
        print("  one request in process, median ms: " + ", ".join(f"{k} {v:.1f}" for k, v in profile.items()),
              flush=True)
        rows: dict[str, Row] = {}
        rows["alone"] = forward_row(names["alone"], model_dir, body, 1, cpus, args)
        rows["alone_n"] = forward_row(names["alone_n"], model_dir, body, cpus, 1, args)
        rows["alone_int8"] = forward_row(names["alone_int8"], model_dir, body, 1, cpus, args, "int8")
        for key, workers, env in (("serve", None, {}), ("serve1", 1, {}),
                                  ("int8", None, {"DOGBREED_PRECISION": "int8"})):
            with start_serve(model_dir, work, workers, **env) as server:
                rows[key] = measure(lambda key=key: names[key], server, body, args)
        for key, env in (("ts", clean_env()), ("ts1", clean_env(OMP_NUM_THREADS="1"))):
            with start_torchserve(store, work / key, env) as (server, ts):
                rows[key] = measure(lambda key=key, ts=ts: names[key].format(ts.workers(), ts_threads),
                                    server, body, args)

    order = ["serve", "serve1", "int8", "ts", "ts1", "alone", "alone_n", "alone_int8"]
    print()
    print(f"## serve vs TorchServe {ts_version}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print()
    print(f"Machine: {cpu_model()}, {cpus} cores (of {os.cpu_count()} online), torch {torch.__version__}, "
          f"{java}, Python {sys.version.split()[0]}")
    print(f"Command: `{command}`")
    print(f"Load: http.client, keep-alive, one {args.photo_size} JPEG ({len(body)} bytes) per POST, "
          f"{args.seconds:g} s per concurrency after {args.warmup:g} s of warm-up. Peak memory: the largest "
          f"sums of RSS and of PSS over the server's process tree, sampled every 0.5 s. Forward passes "
          f"alone: no HTTP, no decoding, the photo preprocessed once.")
    print()
    print(table([rows[k] for k in order], args.concurrency))
    print()
    print("\n".join(comparisons(rows, args.concurrency, cpus)))
    first = args.concurrency[0]
    for key, forward in (("serve", "forward fp32"), ("int8", "forward int8")):
        per_request = 1000 / rows[key].runs[first].rate
        stages = profile["decode"] + profile["resize + crop"] + profile[forward]
        print(f"- {key} at c={first}: {per_request:.1f} ms a request = decode {profile['decode']:.1f} + "
              f"resize and crop {profile['resize + crop']:.1f} + {forward} {profile[forward]:.1f} + the rest "
              f"(HTTP, Flask, JSON, thread hand-offs, the load generator) {per_request - stages:.1f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("serve_vs_torchserve: interrupted (servers stopped)")

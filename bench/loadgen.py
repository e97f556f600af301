"""Pieces the serving benchmarks share: a throwaway model, the photos, a load driver, percentiles,
the median time of a call, forward passes alone, the first answer of a starting server and the
memory of its process tree.

The load driver is plain ``http.client`` over keep-alive connections, one thread per connection,
so every server is driven by the same client code.
"""

from __future__ import annotations

import http.client
import io
import multiprocessing
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "sample-images"


def photos(folder: Path = PHOTOS) -> list[Path]:
    """The sample photos (JPEG), sorted by name; SystemExit when there are none."""
    found = sorted(folder.glob("*.jpg"))
    if not found:
        raise SystemExit(f"no photos in {folder}")
    return found


def throwaway_model(image_size: int, workdir: Path, classes: int = 3, per_class: int = 4) -> Path:
    """A model folder trained by the real `train` for one epoch on generated data (speed does not
    depend on the weights)."""
    from local_test.testdata import make_dataset, write_opt_ml

    data = make_dataset(workdir / "data", classes=classes, per_class=per_class, size=64)
    root = write_opt_ml(workdir / "opt_ml", data, {"epochs": "1", "image_size": str(image_size),
                                                   "pretrained": "false", "batch_size": "4"})
    subprocess.run([sys.executable, "-m", "dogbreed.train"], env={**os.environ, "OPT_ML": str(root)},
                   check=True, capture_output=True)
    return root / "model"


def untrained_model(folder: Path, classes: int, image_size: int) -> Path:
    """A model folder in `train`'s format (written by ModelArtifact) holding a randomly initialised
    ResNet18 and its int8 model calibrated on the sample photos: what `train` would write, in
    seconds instead of minutes."""
    import torch

    from dogbreed.contract.artifact import ModelArtifact, ModelMetadata, Preprocessing
    from dogbreed.data.images import decode
    from dogbreed.data.preprocess import eval_transform
    from dogbreed.model import quantize
    from dogbreed.model.resnet import ResNet18
    from local_test.testdata import class_names

    torch.manual_seed(0)
    model = ResNet18(classes).eval()
    weights, int8_weights = io.BytesIO(), io.BytesIO()
    torch.save(model.state_dict(), weights)
    transform = eval_transform(image_size)
    batch = torch.stack([transform(decode(path.read_bytes())) for path in photos()])
    torch.save(quantize.calibrate(model, [batch], image_size).state_dict(), int8_weights)
    meta = ModelMetadata("resnet18", classes, Preprocessing.for_size(image_size),
                         metrics={"selected_epoch": 0}, versions={"torch": torch.__version__},
                         int8={"engine": quantize.ENGINE, "calibration_images": len(batch)})
    folder.mkdir(parents=True, exist_ok=True)
    ModelArtifact(folder, meta, class_names(classes)).write(weights.getvalue(), int8_weights.getvalue())
    return folder


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 <= q <= 1) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def median_ms(call: Callable[[], object], repeats: int = 30) -> float:
    """Median milliseconds of ``call`` over ``repeats`` calls, after 3 unmeasured ones."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


@dataclass
class Run:
    """Answers counted over a wall-clock span: ``latencies`` of the successful ones, in seconds."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.5)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


def drive(port: int, bodies: list[bytes], concurrency: int, *, total: int | None = None,
          seconds: float | None = None, path: str = "/invocations", content_type: str = "image/jpeg",
          host: str = "127.0.0.1", timeout: float = 120) -> Run:
    """POST ``bodies`` in turn to ``path`` from ``concurrency`` keep-alive connections, either
    ``total`` requests or for ``seconds`` (a request under way then is finished and counted).
    Statuses other than 200 and failed connections count as errors (the connection is reopened)."""
    if (total is None) == (seconds is None):
        raise ValueError("give total or seconds")
    lock = threading.Lock()
    counter = iter(range(total if total is not None else sys.maxsize))
    run = Run(0.0)
    deadline = time.perf_counter() + seconds if seconds is not None else float("inf")

    def error(message: str) -> None:
        with lock:
            run.errors += 1
            run.first_error = run.first_error or message

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=bodies[i % len(bodies)],
                             headers={"Content-Type": content_type})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                error(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
                continue
            if resp.status != 200:
                error(f"HTTP {resp.status}")
                continue
            elapsed = time.perf_counter() - started
            with lock:
                run.latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.seconds = time.perf_counter() - started
    return run


def first_answer(port: int, body: bytes, started: float, alive: Callable[[], bool], *,
                 path: str = "/invocations", content_type: str = "image/jpeg", timeout: float = 300,
                 host: str = "127.0.0.1") -> float:
    """Seconds from ``started`` (a ``time.monotonic()``) until a POST of ``body`` answers 200,
    polling every 0.1 s; RuntimeError when ``alive()`` turns false, TimeoutError after ``timeout``."""
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=60)
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": content_type})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return time.monotonic() - started
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            pass
        if not alive():
            raise RuntimeError("the server exited before it answered")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"no answer within {timeout:.0f} s")
        time.sleep(0.1)


def tree(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and all its descendants (those alive now)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class TreeMemory:
    """Samples the summed RSS and PSS of a process tree every ``interval`` seconds in a thread and
    keeps the peaks (bytes). PSS shares pages common to several processes (gunicorn's forked
    workers, the frozen parts of a JVM) among them, so its sum counts each page once; RSS's sum
    counts a shared page once per process."""

    def __init__(self, pid: Callable[[], int | None], interval: float = 0.5):
        self._pid, self._interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        rss = pss = 0
        procs = tree(pid)
        for proc in procs:
            try:
                info = proc.memory_full_info()
            except psutil.Error:
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        self.processes = max(self.processes, len(procs))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()


def _forward_worker(model_dir: str, body: bytes, threads: int, seconds: float, barrier: Any, out: Any,
                    precision: str = "fp32") -> Run:
    """Forward passes for ``seconds`` after a warm-up (and ``barrier``, when given); to ``out`` too."""
    import torch

    from dogbreed.serve.predictor import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor(Path(model_dir), precision=precision)
    batch = torch.from_numpy(predictor.preprocess(body))[None]
    for _ in range(3):
        predictor.forward(batch)
    if barrier is not None:
        barrier.wait(timeout=300)
    run = Run(0.0)
    started = time.perf_counter()
    while (now := time.perf_counter()) - started < seconds:
        predictor.forward(batch)
        run.latencies.append(time.perf_counter() - now)
    run.seconds = time.perf_counter() - started
    if out is not None:
        out.put(run)
    return run


def forward_passes(model_dir: Path, body: bytes, *, processes: int, threads: int, seconds: float,
                   precision: str = "fp32") -> Run:
    """Forward passes alone (eager, batch 1, of ``precision``'s model, on ``body`` preprocessed once)
    for ``seconds``:
    in this process when ``processes`` is 1, else in that many spawned processes at once (started
    together after their warm-up). The rate is the sum of theirs; the latencies are all of them."""
    if processes == 1:
        return _forward_worker(str(model_dir), body, threads, seconds, None, None, precision)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    # Daemonic: an interrupted run does not leave them behind (multiprocessing ends them at exit).
    work = (str(model_dir), body, threads, seconds, barrier, out, precision)
    procs = [ctx.Process(target=_forward_worker, args=work, daemon=True) for _ in range(processes)]
    try:
        for p in procs:
            p.start()
        runs: list[Run] = []
        deadline = time.monotonic() + seconds + 300
        while len(runs) < processes:
            try:
                runs.append(out.get(timeout=1))
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                    raise RuntimeError("a forward-pass process failed or hung (see above)") from None
    except BaseException:
        for p in procs:
            if p.pid is not None:
                p.kill()
        raise
    finally:
        for p in procs:
            if p.pid is not None:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
                    p.join()
    rate = sum(r.rate for r in runs)
    latencies = [x for r in runs for x in r.latencies]
    return Run(len(latencies) / rate if rate else 0.0, latencies)

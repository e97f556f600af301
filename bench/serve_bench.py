"""Serving throughput and latency: the real `serve` against the model-only limit, in one run.

    .venv/bin/python bench/serve_bench.py [--model-dir DIR] [--image-size 224] [--workers 1,2]
                                          [--requests 120] [--concurrency 1,4,16]

Starts the real server (gunicorn + Flask) on a free loopback port for each worker count and
sends the full-size photos of ../shared/data/sample-images as image/jpeg at each concurrency.
Beside it, in the same run and with the same torch threads per process, it measures the
model-only limit (forward passes on tensors already preprocessed) and the preprocessing alone
(JPEG decode + resize + crop + normalise). Without --model-dir, a throwaway model is trained at
--image-size by the real `train` on generated data: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import PHOTOS, drive, forward_passes, percentile, photos, throwaway_model  # noqa: E402
from dogbreed.contract.artifact import ModelArtifact  # noqa: E402
from dogbreed.model.hardware import cpu_count  # noqa: E402
from dogbreed.serve.predictor import Predictor  # noqa: E402
from tests.helpers import Server  # noqa: E402


def limits(model_dir: Path, bodies: list[bytes], threads: int, repeats: int = 30) -> tuple[float, float]:
    """(model-only forward passes/s at batch 1, preprocessing images/s) with ``threads`` threads."""
    torch.set_num_threads(threads)
    model_rate = forward_passes(model_dir, bodies[0], processes=1, threads=threads, seconds=2.0).rate
    predictor = Predictor(model_dir)
    started = time.perf_counter()
    for i in range(repeats):
        predictor.preprocess(bodies[i % len(bodies)])
    return model_rate, repeats / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests", type=int, default=120)
    args = parser.parse_args()
    bodies = [p.read_bytes() for p in photos()]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or throwaway_model(args.image_size, Path(tmp))
        size = ModelArtifact.read(model_dir).metadata.preprocessing.image_size
        cpus = cpu_count()
        print(f"serve benchmark: {len(bodies)} photos from {PHOTOS.name} "
              f"({min(len(b) for b in bodies) // 1000}-{max(len(b) for b in bodies) // 1000} KB JPEG), "
              f"model input {size}px, {cpus} CPU(s), torch {torch.__version__}")
        print(f"{'workers':>7} {'threads':>7} {'conc.':>5} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'model-only/s':>12} {'ratio':>5} {'preproc/s':>9} {'ready s':>7}")
        for workers in (int(w) for w in args.workers.split(",")):
            threads = max(1, cpus // workers)
            model_rate, prep_rate = limits(model_dir, bodies, threads)
            limit = model_rate * workers  # every worker forwarding all the time
            with tempfile.TemporaryDirectory() as logs:
                server = Server(model_dir, workers=workers, log=Path(logs) / "serve.log")
                try:
                    ready = server.wait_ready()
                    drive(server.port, bodies, 2, total=2 * len(bodies))  # warm every worker
                    for conc in (int(c) for c in args.concurrency.split(",")):
                        run = drive(server.port, bodies, conc, total=args.requests)
                        if run.errors:
                            raise SystemExit(f"{run.errors} request(s) failed, first: {run.first_error}")
                        rate, lat = run.rate, run.latencies
                        print(f"{workers:>7} {threads:>7} {conc:>5} {rate:>7.1f} "
                              f"{1000 * statistics.median(lat):>7.1f} {1000 * percentile(lat, 0.99):>7.1f} "
                              f"{limit:>12.1f} {rate / limit:>5.2f} {prep_rate:>9.1f} {ready:>7.2f}")
                finally:
                    server.stop()


if __name__ == "__main__":
    main()

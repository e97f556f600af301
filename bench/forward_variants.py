"""ResNet18's forward pass alone, in the variants serving could use, in one run: a table of passes/s.

    PYTHONPATH=container:. .venv/bin/python bench/forward_variants.py [--classes 120] [--seconds 4]

On random 224 px inputs, with all cores' threads: eager fp32 (contiguous, channels_last), bf16
autocast (channels_last), and the int8 model `train` writes (dogbreed.model.quantize, calibrated here on
random inputs: speed does not depend on the ranges), at batch 1, 4 and 8; then eager fp32 at batch 1
run from a new thread each time (what a pool of request threads did: each thread gets its own
OpenMP team) against the same thread throughout.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import torch

from bench.loadgen import median_ms
from dogbreed.model import quantize
from dogbreed.model.hardware import cpu_count
from dogbreed.model.resnet import ResNet18

BATCHES = (1, 4, 8)


def rate(forward: Callable[[torch.Tensor], object], batch: int, seconds: float, channels_last: bool) -> float:
    """Images a second through ``forward`` at ``batch``, after a warm-up."""
    x = torch.randn(batch, 3, 224, 224)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            forward(x)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            forward(x)
            done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=4.0, help="per cell")
    args = parser.parse_args()
    threads = cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ResNet18(args.classes).eval()
    last = ResNet18(args.classes).eval().to(memory_format=torch.channels_last)
    last.load_state_dict(model.state_dict())

    def bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return last(x)

    int8 = quantize.calibrate(model, [torch.randn(8, 3, 224, 224)], 224)
    variants = [("eager fp32", model, False), ("eager fp32, channels_last", last, True),
                ("bf16 autocast, channels_last", bf16, True), ("int8 (dogbreed.model.quantize)", int8, True)]
    print(f"ResNet18, {args.classes} classes, 224 px, {threads} threads, torch {torch.__version__}, "
          f"{args.seconds:g} s a cell")
    print(f"{'forward pass':<32}" + "".join(f"{f'batch {b}/s':>12}" for b in BATCHES))
    for name, forward, channels_last in variants:
        cells = [rate(forward, b, args.seconds, channels_last) for b in BATCHES]
        print(f"{name:<32}" + "".join(f"{c:>12.1f}" for c in cells), flush=True)

    x = torch.randn(1, 3, 224, 224)

    def once() -> None:
        with torch.inference_mode():
            model(x)

    def from_a_new_thread() -> None:
        thread = threading.Thread(target=once)
        thread.start()
        thread.join()

    same, fresh = median_ms(once), median_ms(from_a_new_thread)
    print(f"eager fp32 batch 1, median ms: the same thread {same:.1f}, a new thread each time {fresh:.1f} "
          f"(x{fresh / same:.2f})")


if __name__ == "__main__":
    main()

"""The GPU figures, in one table, for the day a GPU is lent (a few minutes, nothing to download).

    .venv/bin/python bench/gpu_run.py [--seconds 15] [--batch-size 64] [--no-torchserve]
    .venv/bin/python bench/gpu_run.py --smoke     # the same code on the CPU, tiny: a test, no figures

Needs the checkout and a CUDA machine only: the photos are generated (the sample photos of
../shared are used for serving when they are there), the models are written in seconds
(random weights: speed does not depend on them). Without CUDA it says so, measures nothing and
exits 0 (``--smoke`` runs every step on the CPU at 64 px for a second each instead: what
tests/e2e/test_gpu_run.py runs). Rows:

- AMP training at 224 px (ResNet18, AdamW, autocast with the dtype `train` picks, GradScaler for
  float16), full fine-tuning and head only: on tensors already on the GPU (the device's limit),
  then fed by the real loader decoding the photos with `train`'s workers; GPU utilisation sampled
  by nvidia-smi every 0.2 s, the loader's wait share of the step time, and one epoch of the 6,680
  dogImages training photos estimated from the loader-fed rate;
- forward passes of a batch of 8 at 224 px in float32 and in half precision (float16, bfloat16
  where supported), channels_last: what a half-precision `serve` could reach;
- the real `serve` on the GPU (float32, its only GPU precision) at c=1 and c=16, beside TorchServe
  0.12 on the same GPU (when installed: bench/requirements-torchserve.txt).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE = 224  # --smoke: 64
DEVICE = "cuda"  # --smoke: cpu
EPOCH_IMAGES = 6680  # dogImages' training split
ROWS: list[tuple[str, str, str]] = []  # (what, figure, note)


def row(what: str, figure: str, note: str = "") -> None:
    ROWS.append((what, figure, note))
    print(f"  {what}: {figure} {note}".rstrip(), flush=True)


@contextlib.contextmanager
def utilisation() -> Iterator[list[float]]:
    """nvidia-smi's GPU utilisation (%) every 0.2 s while the block runs (empty without it)."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        if not shutil.which("nvidia-smi"):
            return
        while not stop.wait(0.2):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--id=0",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip().isdigit():
                samples.append(float(out.stdout.strip()))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def for_seconds(seconds: float, step: Callable[[], int]) -> float:
    """Items a second ``step`` (returning how many it did) goes through in about ``seconds``."""
    synchronize()
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        done += step()
    synchronize()
    return done / (time.perf_counter() - started)


def training(photos: Path, finetune: str, args: argparse.Namespace) -> None:
    from torchvision.models import resnet18

    from dogbreed.contract.hyperparameters import AUTO
    from dogbreed.data.loader import ImageFolder, collate
    from dogbreed.data.preprocess import decode_side, train_transform
    from dogbreed.data.splits import scan_split
    from dogbreed.model.hardware import place
    from dogbreed.model.network import freeze_backbone, set_train_mode

    placement = place(0, 1, amp=True, workers=AUTO)
    split = scan_split("train", photos)
    model = resnet18(num_classes=len(split.classes)).to(placement.device, memory_format=torch.channels_last)
    head = finetune == "head"
    trained = freeze_backbone(model) if head else list(model.parameters())
    set_train_mode(model, head)
    optimizer = torch.optim.AdamW(trained, lr=1e-3)
    scaler = torch.amp.GradScaler(DEVICE, enabled=placement.amp_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss()
    n = args.batch_size

    def step(images: torch.Tensor, labels: torch.Tensor) -> int:
        with torch.autocast(DEVICE, dtype=placement.amp_dtype or torch.bfloat16,
                            enabled=placement.amp_dtype is not None):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return len(labels)

    images = torch.randn(n, 3, SIZE, SIZE, device=placement.device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, len(split.classes), (n,), device=placement.device)
    for _ in range(3):
        step(images, labels)
    dtype = str(placement.amp_dtype or torch.float32).removeprefix("torch.")
    name = f"AMP training, {finetune}, {n} x {SIZE} px ({dtype})"
    with utilisation() as busy:
        limit = for_seconds(args.seconds, lambda: step(images, labels))
    row(f"{name}, tensors on the GPU", f"{limit:.0f} images/s", busy_share(busy))

    dataset = ImageFolder(split.samples, train_transform(SIZE, True), decode_side(SIZE, True))
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**9)
    loader = DataLoader(dataset, batch_size=n, sampler=sampler, collate_fn=collate,
                        num_workers=placement.loader_workers, pin_memory=DEVICE == "cuda",
                        prefetch_factor=4 if placement.loader_workers else None)
    batches, waited, done = iter(loader), 0.0, 0
    for _ in range(3):
        next(batches)
    with utilisation() as busy:
        synchronize()
        started = last = time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            batch = next(batches)
            waited += time.perf_counter() - last
            done += step(batch.images.to(placement.device, non_blocking=True).to(
                memory_format=torch.channels_last), batch.labels.to(placement.device, non_blocking=True))
            last = time.perf_counter()
        synchronize()
        elapsed = time.perf_counter() - started
    rate = done / elapsed
    row(f"{name}, the loader decoding photos ({placement.loader_workers} workers)", f"{rate:.0f} images/s",
        f"{rate / limit:.2f} of the limit, waiting {100 * waited / elapsed:.0f}%, {busy_share(busy)}, "
        f"an epoch of {EPOCH_IMAGES} in {EPOCH_IMAGES / rate:.0f} s")


def busy_share(samples: list[float]) -> str:
    return f"GPU busy {statistics.mean(samples):.0f}%" if samples else "GPU busy: no nvidia-smi"


def forward(args: argparse.Namespace) -> None:
    from torchvision.models import resnet18

    model = resnet18(num_classes=120).to(DEVICE).eval().to(memory_format=torch.channels_last)
    batch = torch.randn(8, 3, SIZE, SIZE, device=DEVICE).to(memory_format=torch.channels_last)
    half = [torch.float16, *([torch.bfloat16] if torch.cuda.is_bf16_supported() else [])]
    dtypes = [None, *(half if DEVICE == "cuda" else [torch.bfloat16])]
    base = None
    for dtype in dtypes:
        def once(dtype: torch.dtype | None = dtype) -> int:
            with torch.inference_mode(), torch.autocast(DEVICE, dtype=dtype or torch.bfloat16,
                                                        enabled=dtype is not None):
                model(batch)
            return len(batch)

        for _ in range(5):
            once()
        rate = for_seconds(min(args.seconds, 10), once)
        base = base or rate
        row(f"forward passes, batch 8, {str(dtype or torch.float32).removeprefix('torch.')}",
            f"{rate:.0f} images/s",
            f"{rate / base:.2f}x float32")


def serving(args: argparse.Namespace, work: Path) -> None:
    from bench import serve_vs_torchserve as peer
    from bench.loadgen import PHOTOS, photos, untrained_model

    if not any(PHOTOS.glob("*.jpg")):
        row("serve", "not measured", f"no sample photos in {PHOTOS} (../shared beside the checkout)")
        return
    model = untrained_model(work / "model", 120, SIZE)
    body = max(photos(), key=lambda p: p.stat().st_size).read_bytes()
    settings = argparse.Namespace(warmup=3, seconds=args.seconds, concurrency=[1, 16])
    servers: list[tuple[str, Callable[[], contextlib.AbstractContextManager]]] = [
        ("serve, float32", lambda: peer.start_serve(model, work, None))]
    if args.torchserve:
        try:
            version = peer.check_torchserve()
            peer.java_version()
            store = peer.export_mar(model, work / "store")
            servers.append((f"TorchServe {version}",
                            lambda: _first(peer.start_torchserve(store, work, peer.clean_env()))))
        except SystemExit as why:
            row("TorchServe", "not measured", str(why))
    for name, start in servers:
        with start() as server:
            measured = peer.measure(lambda name=name: name, server, body, settings)
        for conc, run in measured.runs.items():
            latencies = run.latencies
            median = f"median {1000 * statistics.median(latencies):.1f} ms" if latencies else "no answer"
            row(f"{name}, c={conc}", f"{run.rate:.1f} req/s", median)


@contextlib.contextmanager
def _first(started: contextlib.AbstractContextManager) -> Iterator[object]:
    with started as (server, _process):
        yield server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="each measurement's length")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-torchserve", dest="torchserve", action="store_false")
    parser.add_argument("--smoke", action="store_true", help="every step on the CPU, tiny (a test)")
    args = parser.parse_args()
    if args.smoke:
        global SIZE, DEVICE
        SIZE, DEVICE = 64, "cpu"
        args.seconds, args.batch_size, args.torchserve = 1, 8, False
    elif not torch.cuda.is_available():
        print("gpu_run: no GPU found (torch.cuda.is_available() is False): nothing measured; run it on a "
              "CUDA machine")
        return 0
    from local_test.testdata import make_dataset

    where = "the CPU (--smoke)" if args.smoke else torch.cuda.get_device_name(0)
    print(f"gpu_run: {where}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        per_class, side = (4, 96) if args.smoke else (40, 400)
        photos = make_dataset(work / "photos", classes=8, per_class=per_class, size=side) / "train"
        for finetune in ("full", "head"):
            training(photos, finetune, args)
        forward(args)
        serving(args, work)
    width = max(len(what) for what, _, _ in ROWS)
    print(f"\n| {'what':<{width}} | figure | notes |\n|{'-' * (width + 2)}|---:|---|")
    for what, figure, note in ROWS:
        print(f"| {what:<{width}} | {figure} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

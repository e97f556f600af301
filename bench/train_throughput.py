"""Training throughput: the real input pipeline against the model-only limit, in one run.

    .venv/bin/python bench/train_throughput.py [--data work/data/dogs120-90px/dogImages/train]
                                               [--image-size 64] [--batch-size 64] [--batches 20]
                                               [--finetune full|head] [--no-debugger]

Times the training step (forward, backward, AdamW) of ResNet18 on tensors already in memory (the
peer: what the hardware allows), the same step fed by the real loader decoding the JPEGs, with
the threads and loader workers `train` would use, then by the loader reading the photos decoded
once (``decode_cache``, what `train` does by default), then each loader alone (no training step:
how many images a second it could feed a faster device), and last (unless ``--no-debugger``) the
decoding loader again with the Debugger hook (the configuration `dogctl train --local` writes) and
the profiler on. Prints a table with the ratios and the share of the loader-fed step time spent
waiting for data. ``--finetune
head`` trains the final layer alone, as `train` does with feature_views=0 (its feature cache skips
the loader).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from torchvision.models import resnet18

from dogbreed.contract.hyperparameters import AUTO
from dogbreed.data.decoded import DecodedCache
from dogbreed.data.loader import ImageFolder, collate
from dogbreed.data.preprocess import decode_side, train_transform
from dogbreed.data.splits import scan_split
from dogbreed.debugger.hook import DebugHook, hook_config
from dogbreed.debugger.profiler import StepTimer, SystemMonitor
from dogbreed.model.hardware import place
from dogbreed.model.network import freeze_backbone, set_train_mode

FIRST_SAVES = 10  # steps 0-9, as the debugger configuration saves them


def step_fn(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
            timer: StepTimer | None = None,
            hook: DebugHook | None = None) -> Callable[[torch.Tensor, torch.Tensor], None]:
    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if hook is not None:
            hook.save_gradient_sample()
        optimizer.step()

    def timed(images: torch.Tensor, labels: torch.Tensor) -> None:
        timer.mark("data")
        step(images, labels)
        timer.mark("optimizer")
        timer.end(0, 0)
        timer.begin(0)

    return step if timer is None else timed


def step_times(loader: DataLoader, step: Callable, waits: list[float] | None = None) -> list[float]:
    """Seconds per step (data wait included) of every batch of the loader; the waits for each
    batch go to ``waits``."""
    times, last = [], time.perf_counter()
    for batch in loader:
        arrived = time.perf_counter()
        step(batch.images, batch.labels)
        now = time.perf_counter()
        times.append(now - last)
        if waits is not None:
            waits.append(arrived - last)
        last = now
    return times


def loader_rate(loader: DataLoader, warmup: int, batch_size: int) -> float:
    """Images a second the loader delivers after ``warmup`` batches, with no step to wait for."""
    batches = iter(loader)
    for _ in range(warmup):
        next(batches)
    started, count = time.perf_counter(), 0
    for _ in batches:
        count += 1
    return count * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("work/data/dogs120-90px/dogImages/train"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--finetune", choices=("full", "head"), default="full")
    parser.add_argument("--no-debugger", action="store_true", help="skip the Debugger-hook row")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is not a folder: run `make demo` (or `dogctl data`) first")

    placement = place(0, 1, amp=False, workers=AUTO)
    split = scan_split("train", args.data)
    torch.manual_seed(0)
    model = resnet18(num_classes=len(split.classes))
    head = args.finetune == "head"
    trained = freeze_backbone(model) if head else list(model.parameters())
    set_train_mode(model, head)
    criterion = nn.CrossEntropyLoss()
    step = step_fn(model, torch.optim.AdamW(trained, lr=1e-3), criterion)
    n, size = args.batch_size, args.image_size

    images = torch.randn(n, 3, size, size)
    labels = torch.randint(0, len(split.classes), (n,))
    for _ in range(args.warmup):
        step(images, labels)
    started = time.perf_counter()
    for _ in range(args.batches):
        step(images, labels)
    model_only = args.batches * n / (time.perf_counter() - started)

    dataset = ImageFolder(split.samples, train_transform(size, True), decode_side(size, True))

    def loader(batches: int, dataset: ImageFolder = dataset) -> DataLoader:
        sampler = RandomSampler(dataset, num_samples=batches * n,
                                generator=torch.Generator().manual_seed(0))
        return DataLoader(dataset, batch_size=n, sampler=sampler, collate_fn=collate,
                          num_workers=placement.loader_workers,
                          prefetch_factor=4 if placement.loader_workers else None)

    waits: list[float] = []
    times = step_times(loader(args.warmup + args.batches), step, waits)[args.warmup:]
    pipeline = n * len(times) / sum(times)
    waiting = sum(waits[args.warmup:]) / sum(times)

    print(f"ResNet18 training step, {args.finetune} fine-tuning, {n} x {size}px, {placement.describe()}")
    print(f"{'configuration':<48} {'images/s':>9} {'ratio':>6} {'data wait':>10}")
    print(f"{'model only (tensors in memory)':<48} {model_only:>9.1f} {1.0:>6.2f} {'-':>10}")
    print(f"{'real photos through the loader':<48} {pipeline:>9.1f} {pipeline / model_only:>6.2f} "
          f"{100 * waiting:>9.0f}%")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        decoded = DecodedCache(Path(tmp), placement.loader_workers).get(
            "train", [p for p, _ in split.samples], split.digest(), dataset.decode_side)
        once = time.perf_counter() - started
        cached = ImageFolder(split.samples, dataset.transform, dataset.decode_side, decoded)
        waits = []
        times = step_times(loader(args.warmup + args.batches, cached), step, waits)[args.warmup:]
        rate = n * len(times) / sum(times)
        print(f"{'the same, photos decoded once (decode_cache)':<48} {rate:>9.1f} {rate / model_only:>6.2f} "
              f"{100 * sum(waits[args.warmup:]) / sum(times):>9.0f}%")
        alone = {name: loader_rate(loader(args.warmup + args.batches, images), args.warmup, n)
                 for name, images in (("photos", dataset), ("decoded", cached))}
    for name, label in (("photos", "decoding the photos"), ("decoded", "photos decoded once")):
        print(f"{'loader alone, ' + label:<48} {alone[name]:>9.1f} {alone[name] / model_only:>6.2f}")
    print(f"decoding the {len(split.samples)} photos once took {once:.1f} s")
    if args.no_debugger:
        return
    with tempfile.TemporaryDirectory() as tmp:
        # What a debugger-on run saves (`dogctl train --local`): reductions of weights, biases and
        # gradients at steps 0-9 (then every N steps), of ReLU inputs at steps 0-9, the gradient
        # sample at steps 0-9, the loss at every step; the system monitor samples every 500 ms and
        # every step is timed.
        config = Path(tmp) / "debughookconfig.json"
        config.write_text(json.dumps(hook_config(Path(tmp) / "tensors", 1_000_000)))
        hook = DebugHook.from_config(config)
        hook.register(model, criterion)
        hook.train_mode()
        timer = StepTimer(Path(tmp) / "profiler", placement.cuda)
        monitor = SystemMonitor(Path(tmp) / "profiler", 0.5, "algo-1")
        monitor.start()
        timer.begin(0)
        debug_step = step_fn(model, torch.optim.AdamW(trained, lr=1e-3), criterion, timer, hook)
        times = step_times(loader(FIRST_SAVES + args.warmup + args.batches), debug_step)
        monitor.stop()
        timer.flush()
        hook.close()
        saved_mb = sum(f.stat().st_size for f in Path(tmp, "tensors").rglob("*") if f.is_file()) / 1e6
    steady = times[FIRST_SAVES + args.warmup:]
    debugged = n * len(steady) / sum(steady)
    per_save = sum(times[:FIRST_SAVES]) / FIRST_SAVES - sum(steady) / len(steady)

    print(f"{'loader + Debugger hook (loss) + profiler':<48} {debugged:>9.1f} {debugged / model_only:>6.2f}")
    print(f"a save at steps 0-9 (reductions of weights, biases, gradients, ReLU inputs; the gradient "
          f"sample) adds {per_save:.2f} s to its step; {FIRST_SAVES} saves wrote {saved_mb:.1f} MB")


if __name__ == "__main__":
    main()

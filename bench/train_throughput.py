"""Training throughput: the real input pipeline against the model-only limit, in one run.

    .venv/bin/python bench/train_throughput.py [--data work/data/dogs120-90px/dogImages/train]
                                               [--image-size 64] [--batch-size 64] [--batches 20]

Times the training step (forward, backward, AdamW) of ResNet18 on tensors already in memory (the
peer: what the hardware allows) and the same step fed by the real loader from decoded JPEGs, with
the threads and loader workers `train` would use. Prints a table with the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from torchvision.models import resnet18

from dogbreed.data import ImageFolder, collate, scan_split
from dogbreed.hardware import place
from dogbreed.hyperparameters import AUTO
from dogbreed.preprocess import decode_side, train_transform


def step_fn(model: nn.Module, optimizer: torch.optim.Optimizer):
    criterion = nn.CrossEntropyLoss()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("work/data/dogs120-90px/dogImages/train"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is not a folder: run `make demo` (or `dogctl data`) first")

    placement = place(0, 1, amp=False, workers=AUTO)
    split = scan_split("train", args.data)
    torch.manual_seed(0)
    model = resnet18(num_classes=len(split.classes)).train()
    step = step_fn(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
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
    sampler = RandomSampler(dataset, num_samples=(args.batches + args.warmup) * n,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=n, sampler=sampler, num_workers=placement.loader_workers,
                        collate_fn=collate, prefetch_factor=4 if placement.loader_workers else None)
    seen = 0
    for i, (x, y, _bad) in enumerate(loader):
        if i == args.warmup:
            started, seen = time.perf_counter(), 0
        step(x, y)
        seen += len(y)
    pipeline = seen / (time.perf_counter() - started)

    print(f"ResNet18 training step, {n} x {size}px, {placement.describe()}")
    print(f"{'configuration':<40} {'images/s':>9} {'ratio':>6}")
    print(f"{'model only (tensors in memory)':<40} {model_only:>9.1f} {1.0:>6.2f}")
    print(f"{'real photos through the loader':<40} {pipeline:>9.1f} {pipeline / model_only:>6.2f}")


if __name__ == "__main__":
    main()

"""Generate small stand-in data: image folders, an /opt/ml tree, stand-in weights.

Used by the tests and by ``local_test`` so that nothing binary is committed.
Each class gets its own colour and stripe pattern, so a few epochs learn it.

    python local_test/testdata.py DIR [--classes 3] [--per-class 8] [--size 64]

makes DIR a complete /opt/ml tree: config files, and the images in input/data/<channel>
(copies, so that DIR can be mounted into a container as /opt/ml).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from dogbreed.contract.opt_ml import OptML
from dogbreed.debugger.hook import TENSORS_DIR, hook_config

CLASS_NAMES = ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier",
               "004.Akita", "005.Alaskan_malamute", "006.American_eskimo_dog")
SPLITS = {"train": 1.0, "valid": 0.5, "test": 0.5}


def class_names(count: int) -> list[str]:
    names = list(CLASS_NAMES[:count])
    names += [f"{i:03d}.Breed_{i}" for i in range(len(names) + 1, count + 1)]
    return names


def draw_image(label: int, size: int, rng: random.Random) -> Image.Image:
    """A noisy picture whose colour and stripe direction identify ``label``."""
    hue = [(200, 60, 60), (60, 180, 60), (60, 60, 200), (200, 200, 40), (160, 60, 200),
           (40, 200, 200)][label % 6]
    base = tuple(min(255, max(0, c + rng.randint(-30, 30))) for c in hue)
    img = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(img)
    step = max(4, size // 6)
    for k in range(-size, 2 * size, step):
        if label % 2:
            draw.line([(k, 0), (k, size)], fill=(255, 255, 255), width=2)
        else:
            draw.line([(0, k), (size, k)], fill=(0, 0, 0), width=2)
    for _ in range(size):
        x, y = rng.randrange(size), rng.randrange(size)
        draw.point((x, y), fill=(rng.randrange(256),) * 3)
    return img


def make_dataset(root: Path, *, classes: int = 3, per_class: int = 8, size: int = 64,
                 splits: dict[str, float] | None = None, seed: int = 0, noise: bool = False) -> Path:
    """``root/<split>/<NNN.Breed>/<n>.jpg`` for each split (test optional via ``splits``).
    With ``noise``, every image is random pixels: labels carry no signal (a model can only
    memorise them, which overfits)."""
    rng = random.Random(seed)
    for split, fraction in (splits or SPLITS).items():
        count = max(1, round(per_class * fraction))
        for label, name in enumerate(class_names(classes)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                img = (Image.frombytes("RGB", (size, size), rng.randbytes(3 * size * size)) if noise
                       else draw_image(label, size, rng))
                img.save(folder / f"{name.split('.')[-1]}_{i:05d}.jpg", quality=90)
    return root


def make_class_folders(root: Path, per_class: dict[str, int]) -> Path:
    """Photos as people keep them: one folder per class, messy names, mixed formats and junk."""
    for i, (name, count) in enumerate(per_class.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for n in range(count):
            ext = (".JPG", ".png", ".webp", ".jpeg")[n % 4]
            fmt = {".JPG": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[ext]
            Image.new("RGB", (24, 24), (40 * i, 10 * n, 90)).save(folder / f"Photo {n} é{ext}", fmt)
        (folder / ".DS_Store").write_bytes(b"\0")
    (root / list(per_class)[0] / "notes.txt").write_text("not a photo")
    return root


def write_opt_ml(root: Path, dataset: Path, hyperparameters: dict[str, str] | None = None, *,
                 hosts: tuple[str, ...] = ("algo-1",), current_host: str = "algo-1",
                 copy: bool = False, debug_interval: int | None = None,
                 debug_first_steps: int = 10, debug_full: bool = False) -> Path:
    """An /opt/ml tree under ``root`` whose channels link to (or, with ``copy``, hold)
    ``dataset``'s splits; with ``debug_interval``, the debugger on (tensors in output/tensors;
    ``debug_full``: whole tensors, as ``--debugger managed`` configures SageMaker's hook)."""
    channels = {s: dataset / s for s in SPLITS if (dataset / s).is_dir()}
    opt = OptML(root)
    hook = (None if debug_interval is None else
            hook_config(opt.output_dir / TENSORS_DIR, debug_interval, debug_first_steps, full=debug_full))
    opt.write_inputs(channels, hyperparameters or {}, hosts=hosts, current_host=current_host,
                     copy=copy, debug_hook=hook)
    return root


def make_standin_weights(path: Path, seed: int = 0) -> str:
    """A randomly initialised ResNet18 state dict in place of the ImageNet file; returns its sha256."""
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(resnet18(weights=None).state_dict(), path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="the /opt/ml tree to write")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--hyperparameters", default='{"epochs": "2", "image_size": "64", '
                        '"batch_size": "8", "pretrained": "false"}',
                        help="JSON object of hyperparameters (string values)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp), classes=args.classes, per_class=args.per_class, size=args.size)
        write_opt_ml(args.dir, dataset, json.loads(args.hyperparameters), copy=True)
    print(args.dir)


if __name__ == "__main__":
    main()

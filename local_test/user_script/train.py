"""An example of bringing your own training script to the dogbreed image.

An Estimator with ``entry_point="train.py", source_dir="local_test/user_script"`` and this
image's ``image_uri`` runs it through the SageMaker training toolkit instead of the built-in
trainer: hyperparameters arrive as arguments, the channels and the model folder as ``SM_*``
variables. It counts the photos of the ``train`` channel, saves a small linear model with
torch and prints one metric line (``user-script: photos=N accuracy=A``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import smdebug  # noqa: F401 - the image's Debugger library is importable by users' scripts
import torch
import torchvision


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    train = Path(os.environ["SM_CHANNEL_TRAIN"])
    photos = sum(1 for p in train.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    model = torch.nn.Linear(4, 2)
    torch.save(model.state_dict(), Path(os.environ["SM_MODEL_DIR"]) / "model.pt")
    print(f"user-script: torch {torch.__version__} torchvision {torchvision.__version__} "
          f"epochs={args.epochs}")
    print(f"user-script: photos={photos} accuracy={0.5 + 0.1 * args.epochs:.2f}")


if __name__ == "__main__":
    main()

"""Tensor transforms: training augmentation and the evaluation transform.

The evaluation transform is rebuilt by ``serve`` from the model's metadata
(:func:`preprocessing_metadata` writes it, :func:`eval_transform_from_metadata`
reads it), so training, validation and serving see images the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T

from .images import IMAGENET_MEAN, IMAGENET_STD, resize_size

Transform = Callable[[Image.Image], torch.Tensor]


def eval_transform(image_size: int, resize: int | None = None,
                   mean: tuple[float, ...] = IMAGENET_MEAN,
                   std: tuple[float, ...] = IMAGENET_STD) -> Transform:
    """Resize the short side, centre-crop, normalise (ImageNet evaluation)."""
    return T.Compose([
        T.Resize(resize or resize_size(image_size)),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def train_transform(image_size: int, augment: bool) -> Transform:
    """Random resized crop and flip when ``augment``, else the evaluation transform."""
    if not augment:
        return eval_transform(image_size)
    return T.Compose([
        T.RandomResizedCrop(image_size, scale=(0.25, 1.0)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def decode_side(image_size: int, train: bool) -> int:
    """Smallest short side worth decoding: crops up to 2x zoom keep full detail in training."""
    return 2 * image_size if train else resize_size(image_size)


def preprocessing_metadata(image_size: int) -> dict[str, Any]:
    return {
        "image_size": image_size,
        "resize_size": resize_size(image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }


def eval_transform_from_metadata(meta: dict[str, Any]) -> Transform:
    return eval_transform(
        int(meta["image_size"]), int(meta["resize_size"]), tuple(meta["mean"]), tuple(meta["std"])
    )

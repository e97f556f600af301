"""Tensor transforms: training augmentation and the evaluation transform.

The evaluation transform (resize the short side, centre-crop, normalise) is
written with PIL, numpy and torch alone, so ``serve`` starts without importing
torchvision; it computes exactly what torchvision's ``Resize``/``CenterCrop``/
``ToTensor``/``Normalize`` do (tested). Validation during training and
``serve`` use this same class, rebuilt from the model's metadata
(:class:`dogbreed.artifact.Preprocessing`, read back by :func:`eval_transform_for`),
so both see images identically.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from .artifact import Preprocessing
from .images import IMAGENET_MEAN, IMAGENET_STD, ImageError, resize_size

Transform = Callable[[Image.Image], torch.Tensor]
MAX_ASPECT = 20


class EvalTransform:
    """Resize the short side to ``resize`` (bilinear), centre-crop ``image_size``, normalise."""

    def __init__(self, image_size: int, resize: int | None = None,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        self.image_size = image_size
        self.resize = resize or resize_size(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __repr__(self) -> str:  # every parameter: the feature cache's key holds it
        return (f"EvalTransform(image_size={self.image_size}, resize={self.resize}, interpolation=bilinear, "
                f"mean={tuple(self.mean.flatten().tolist())}, std={tuple(self.std.flatten().tolist())})")

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """The normalised CHW float tensor of ``img``."""
        return self.normalize(torch.from_numpy(self.pixels(img))[None])[0]

    def pixels(self, img: Image.Image) -> np.ndarray:
        """The resized and cropped ``img``: HWC uint8 (numpy: ``serve``'s request threads
        never start torch's thread pools)."""
        width, height = img.size
        if max(width, height) > MAX_ASPECT * min(width, height):
            # Resizing the short side of a 1x10000 strip would make a gigapixel image.
            raise ImageError(f"image is {width}x{height}: aspect ratio above {MAX_ASPECT}:1")
        if width <= height:
            size = (self.resize, int(self.resize * height / width))
        else:
            size = (int(self.resize * width / height), self.resize)
        img = img.resize(size, Image.Resampling.BILINEAR)
        crop = self.image_size
        top = int(round((size[1] - crop) / 2.0))
        left = int(round((size[0] - crop) / 2.0))
        img = img.crop((left, top, left + crop, top + crop))
        return np.array(img, dtype=np.uint8, copy=True)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """NHWC uint8 pixels -> normalised NCHW float (in channels-last memory, without a copy)."""
        tensor = batch.permute(0, 3, 1, 2).float().div_(255)
        return tensor.sub_(self.mean.to(tensor.device)).div_(self.std.to(tensor.device))


def eval_transform(image_size: int) -> Transform:
    return EvalTransform(image_size)


def train_transform(image_size: int, augment: bool) -> Transform:
    """Random resized crop and flip when ``augment``, else the evaluation transform."""
    if not augment:
        return eval_transform(image_size)
    from torchvision import transforms as T  # training only: serve never imports torchvision

    return T.Compose([
        T.RandomResizedCrop(image_size, scale=(0.25, 1.0)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def decode_side(image_size: int, train: bool) -> int:
    """Smallest short side worth decoding: crops up to 2x zoom keep full detail in training."""
    return 2 * image_size if train else resize_size(image_size)


def eval_transform_for(prep: Preprocessing) -> EvalTransform:
    """The evaluation transform a model was trained with."""
    return EvalTransform(prep.image_size, prep.resize_size, prep.mean, prep.std)

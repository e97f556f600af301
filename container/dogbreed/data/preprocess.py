"""Tensor transforms: training augmentation and the evaluation transform.

The evaluation transform (resize the short side, centre-crop, normalise) is
written with PIL, numpy and torch alone, so ``serve`` starts without importing
torchvision; it computes exactly what torchvision's ``Resize``/``CenterCrop``/
``ToTensor``/``Normalize`` do (tested). Validation during training and
``serve`` use this same class, rebuilt from the model's metadata
(:class:`dogbreed.contract.artifact.Preprocessing`, read back by :func:`eval_transform_for`),
so both see images identically. Training augmentation is torchvision's, imported on
first use only (:class:`AugmentTransform`): a run on cached features never imports it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dogbreed.contract.artifact import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, resize_size
from dogbreed.data.images import ImageError

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


class AugmentTransform:
    """Random resized crop (a quarter to all of the image) and horizontal flip, then the tensor and
    normalisation: torchvision's transforms, imported at the first call (and so not in a run
    that trains on cached features)."""

    SCALE = (0.25, 1.0)

    def __init__(self, image_size: int):
        self.image_size = image_size
        self._compose: Transform | None = None

    def __repr__(self) -> str:  # every parameter: the feature cache's key holds it
        return (f"AugmentTransform(RandomResizedCrop(size={self.image_size}, scale={self.SCALE}, "
                f"ratio=(3/4, 4/3), interpolation=bilinear, antialias=True), RandomHorizontalFlip(p=0.5), "
                f"ToTensor(), Normalize(mean={IMAGENET_MEAN}, std={IMAGENET_STD}))")

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if self._compose is None:
            from torchvision import transforms as T  # training only: serve never imports torchvision

            self._compose = T.Compose([
                T.RandomResizedCrop(self.image_size, scale=self.SCALE),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ])
        return self._compose(img)


def train_transform(image_size: int, augment: bool) -> Transform:
    """Random resized crop and flip when ``augment``, else the evaluation transform."""
    return AugmentTransform(image_size) if augment else eval_transform(image_size)


def torchvision_version() -> str:
    """``torchvision.__version__`` (local tag included) without importing torchvision: read from
    its ``version.py``, or the installed distribution's version if that cannot be read."""
    if "torchvision" in sys.modules:
        return str(sys.modules["torchvision"].__version__)
    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.origin:
        try:
            text = (Path(spec.origin).parent / "version.py").read_text()
        except OSError:
            text = ""
        if found := re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE):
            return found.group(1)
    return importlib.metadata.version("torchvision")


def decode_side(image_size: int, train: bool) -> int:
    """Smallest short side worth decoding: crops up to 2x zoom keep full detail in training."""
    return 2 * image_size if train else resize_size(image_size)


def eval_transform_for(prep: Preprocessing) -> EvalTransform:
    """The evaluation transform a model was trained with."""
    return EvalTransform(prep.image_size, prep.resize_size, prep.mean, prep.std)

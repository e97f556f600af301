"""The training and evaluation datasets over a scanned split, and their batches."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from dogbreed.data.decoded import DecodedImages
from dogbreed.data.images import ImageError, decode
from dogbreed.data.preprocess import Transform


class ImageFolder(Dataset):
    """Samples of a :class:`Split` as ``(tensor, label, index)``; an unreadable image comes
    back as ``(None, description, index)``. With ``decoded`` (the same images decoded at
    ``decode_side``), images are read from there instead of decoded again."""

    def __init__(self, samples: list[tuple[str, int]], transform: Transform, decode_side: int,
                 decoded: DecodedImages | None = None):
        self.samples = samples
        self.transform = transform
        self.decode_side = decode_side
        self.decoded = decoded

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        path, label = self.samples[index]
        try:
            image = decode(path, self.decode_side) if self.decoded is None else self.decoded.image(index)
            return self.transform(image), label, index
        except (ImageError, OSError) as exc:
            return None, f"{path} ({exc})", index


class Batch(NamedTuple):
    images: torch.Tensor
    labels: torch.Tensor
    indices: list[int]  # positions in the dataset's samples
    bad: list[str]  # descriptions of the samples that could not be decoded


def collate(batch: list[tuple[Any, Any, int]]) -> Batch:
    """Stack the good samples; return the unreadable ones' descriptions beside them."""
    good = [item for item in batch if item[0] is not None]
    bad = [desc for x, desc, _ in batch if x is None]
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), [], bad)
    return Batch(torch.stack([x for x, _, _ in good]),
                 torch.tensor([y for _, y, _ in good], dtype=torch.long),
                 [i for _, _, i in good], bad)

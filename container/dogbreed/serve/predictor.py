"""A trained model ready to answer: loaded once from the artefact ``train`` wrote."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dogbreed.contract.artifact import ArtifactError, ModelArtifact
from dogbreed.contract.environment import PRECISIONS
from dogbreed.data.images import opened, to_rgb
from dogbreed.data.preprocess import eval_transform_for
from dogbreed.model import quantize
from dogbreed.model.resnet import ResNet18
from dogbreed.serve.batching import Batcher
from dogbreed.serve.threads import SharedThreads

# Most images in one forward pass: past 8, a CPU gains little per image and latency grows.
MAX_BATCH = 8


class ModelLoadError(ArtifactError):
    """The weights cannot be loaded into the model the metadata describes."""


def _load(artifact: ModelArtifact, precision: str) -> nn.Module:
    """The fp32 ResNet18, or the int8 model ``train`` calibrated, with the artefact's weights."""
    meta = artifact.metadata
    weights = artifact.int8_weights_path if precision == "int8" else artifact.weights_path
    if weights is None:
        raise ModelLoadError(f"{artifact.folder} has no int8 model (train writes one when "
                             "int8_calibration_images is above 0): serve it in fp32, or train it again")
    try:
        with warnings.catch_warnings():  # quantised tensors load through TypedStorage (deprecated)
            warnings.filterwarnings("ignore", "TypedStorage is deprecated", UserWarning)
            state = torch.load(weights, map_location="cpu", weights_only=True)
        if precision == "int8":
            return quantize.load(meta.num_classes, meta.preprocessing.image_size, state)
        model = ResNet18(meta.num_classes)
        model.load_state_dict(state, strict=True)
        return model
    except FileNotFoundError:
        raise ModelLoadError(f"{weights} is missing") from None
    except Exception as exc:  # re-raised as ModelLoadError: any failure means unusable weights
        raise ModelLoadError(f"{weights} cannot be loaded into the {precision} ResNet18: {exc}") from exc


class Predictor:
    """Decode, preprocess and classify photos with one loaded model."""

    def __init__(self, model_dir: Path, device: torch.device | None = None, precision: str = "fp32",
                 threads: SharedThreads | None = None):
        """``threads``: on the CPU, the threads of each forward pass are shared with other
        processes (serve's workers); None: torch's setting."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision is one of {', '.join(PRECISIONS)}, not {precision!r}")
        artifact = ModelArtifact.read(model_dir)
        self.classes: list[str] = artifact.classes
        self.breeds = artifact.breeds
        self.metadata = artifact.metadata
        self.precision = precision
        self.transform = eval_transform_for(artifact.metadata.preprocessing)
        self.decode_side = self.transform.resize
        # int8 kernels (x86 backend) run on the CPU only.
        self.device = torch.device("cpu") if precision == "int8" else device or torch.device("cpu")
        model = _load(artifact, precision)
        self.threads = threads if self.device.type == "cpu" else None
        self.memory_format = torch.channels_last  # faster on CUDA, and on CPU with oneDNN (1.2x)
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        # One forward pass at a time per process, on one thread: concurrent requests decode in
        # parallel, then share a batch, without oversubscribing the threads torch was given.
        self.batcher = Batcher(self.forward, MAX_BATCH)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def preprocess(self, data: bytes,
                   hold: Callable[[int], AbstractContextManager[None]] | None = None) -> np.ndarray:
        """Bytes of a photo -> the model's input pixels, HWC uint8 (raises images.ImageError).
        ``hold(pixels)`` is held while the photo's pixels exist (serve's decode budget).
        Normalisation happens batched, on the inference thread."""
        with opened(data, self.decode_side) as img:
            width, height = img.size
            with hold(width * height) if hold else contextlib.nullcontext():
                return self.transform.pixels(to_rgb(img))

    @torch.inference_mode()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Class probabilities of NHWC uint8 ``pixels``, computed on the calling thread."""
        with self.threads.share() if self.threads else contextlib.nullcontext():
            batch = self.transform.normalize(pixels.to(self.device))
            logits = self.model(batch.contiguous(memory_format=self.memory_format))
            return torch.softmax(logits.float(), dim=1).cpu()

    def probabilities(self, pixels: torch.Tensor, timeout: float | None = None) -> torch.Tensor:
        """:meth:`forward` on the inference thread, maybe batched with other requests' images;
        TimeoutError after ``timeout`` seconds."""
        return self.batcher.run(pixels, timeout)

    def predict(self, images: list[np.ndarray], top_k: int,
                timeout: float | None = None) -> list[list[dict[str, Any]]]:
        """Top ``top_k`` breeds for each image from :meth:`preprocess`, most probable first."""
        probs = self.probabilities(torch.from_numpy(np.stack(images)), timeout)
        values, indices = probs.topk(min(top_k, self.num_classes), dim=1)
        return [
            [{"breed": self.breeds[i], "class": self.classes[i], "index": i, "probability": round(p, 6)}
             for p, i in zip(vs.tolist(), ix.tolist(), strict=True)]
            for vs, ix in zip(values, indices, strict=True)
        ]

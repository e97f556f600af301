"""A trained model ready to answer: loaded once from the artefact ``train`` wrote."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from .artifact import ArtifactError, ModelArtifact
from .images import decode
from .preprocess import eval_transform_for
from .resnet import ResNet18


class ModelLoadError(ArtifactError):
    """The weights cannot be loaded into the model the metadata describes."""


class Predictor:
    """Decode, preprocess and classify photos with one loaded model."""

    def __init__(self, model_dir: Path, device: torch.device | None = None):
        artifact = ModelArtifact.read(model_dir)
        self.classes: list[str] = artifact.classes
        self.breeds = artifact.breeds
        self.metadata = artifact.metadata
        self.transform = eval_transform_for(artifact.metadata.preprocessing)
        self.decode_side = self.transform.resize
        self.device = device or torch.device("cpu")
        weights = artifact.weights_path
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model = ResNet18(len(self.classes))
            model.load_state_dict(state, strict=True)
        except FileNotFoundError:
            raise ModelLoadError(f"{weights} is missing") from None
        except Exception as exc:  # re-raised as ModelLoadError: any failure means unusable weights
            raise ModelLoadError(f"{weights} cannot be loaded into ResNet18: {exc}") from exc
        self.memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        # One forward pass at a time per process: concurrent requests decode in parallel, but
        # do not oversubscribe the threads torch was given.
        self._lock = threading.Lock()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def preprocess(self, data: bytes) -> torch.Tensor:
        """Bytes of any image Pillow reads -> normalised tensor (raises images.ImageError)."""
        return self.transform(decode(data, self.decode_side))

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        with self._lock:
            logits = self.model(batch.to(self.device, memory_format=self.memory_format))
        return torch.softmax(logits.float(), dim=1).cpu()

    def predict(self, tensors: list[torch.Tensor], top_k: int) -> list[list[dict[str, Any]]]:
        """Top ``top_k`` breeds for each preprocessed image, most probable first."""
        probs = self.probabilities(torch.stack(tensors))
        values, indices = probs.topk(min(top_k, self.num_classes), dim=1)
        return [
            [{"breed": self.breeds[i], "class": self.classes[i], "index": i, "probability": round(p, 6)}
             for p, i in zip(vs.tolist(), ix.tolist(), strict=True)]
            for vs, ix in zip(values, indices, strict=True)
        ]

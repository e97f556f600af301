"""A trained model ready to answer: loaded once from the artefacts ``train`` wrote."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import torch

from .images import decode
from .opt_ml import CLASSES_FILE, METADATA_FILE, MODEL_FILE
from .preprocess import eval_transform_from_metadata
from .resnet import ResNet18

SUPPORTED_ARCHITECTURES = ("resnet18",)


class ModelLoadError(Exception):
    """The model folder is missing or inconsistent; the message says what is wrong."""


def display_name(folder: str) -> str:
    """'001.Affenpinscher' -> 'Affenpinscher'; '077.Irish_water_spaniel' -> 'Irish water spaniel'."""
    return re.sub(r"^\d+[._-]", "", folder).replace("_", " ")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing: is this a model folder written by `train`?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc


class Predictor:
    """Decode, preprocess and classify photos with one loaded model."""

    def __init__(self, model_dir: Path, device: torch.device | None = None):
        model_dir = Path(model_dir)
        meta = _read_json(model_dir / METADATA_FILE)
        if meta.get("architecture") not in SUPPORTED_ARCHITECTURES:
            raise ModelLoadError(f"unsupported architecture {meta.get('architecture')!r} in {METADATA_FILE}")
        classes = _read_json(model_dir / meta.get("classes_file", CLASSES_FILE))
        if not isinstance(classes, list) or len(classes) != meta.get("num_classes"):
            raise ModelLoadError(f"{CLASSES_FILE} does not list {meta.get('num_classes')} class names")
        self.classes: list[str] = [str(c) for c in classes]
        self.breeds = [display_name(c) for c in self.classes]
        self.metadata = meta
        self.transform = eval_transform_from_metadata(meta["preprocessing"])
        self.decode_side = self.transform.resize
        self.device = device or torch.device("cpu")
        weights = model_dir / meta.get("weights_file", MODEL_FILE)
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

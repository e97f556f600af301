"""The model artefact: what ``train`` writes to /opt/ml/model and ``serve`` loads, in one type.

    model.pt        state dict (loads with ``torch.load(..., weights_only=True)``)
    model_int8.pt   optional: the int8 model's state dict, for CPU serving (dogbreed.model.quantize)
    classes.json    class folder names in output-index order
    metadata.json   :class:`ModelMetadata`: architecture, preprocessing, hyperparameters,
                    metrics, per-epoch history, data counts, training facts, versions

:class:`ModelArtifact` reads and writes the folder; nothing else knows its file names or keys.
This module imports neither torch nor numpy, so the orchestration tool reads a model cheaply.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dogbreed.contract.opt_ml import read_json
from dogbreed.errors import UserError
from dogbreed.files import atomic_write_bytes, plain_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # resize the short side to this times the crop, as torchvision does


def resize_size(image_size: int) -> int:
    """The short side images are resized to before the centre crop of ``image_size``."""
    return int(round(image_size * RESIZE_RATIO))


MODEL_FILE = "model.pt"
INT8_FILE = "model_int8.pt"
CLASSES_FILE = "classes.json"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
SUPPORTED_ARCHITECTURES = ("resnet18",)


class ArtifactError(UserError):
    """The model folder is missing or inconsistent; the message says what is wrong."""


def display_name(folder: str) -> str:
    """'001.Affenpinscher' -> 'Affenpinscher'; '077.Irish_water_spaniel' -> 'Irish water spaniel'."""
    return re.sub(r"^\d+[._-]", "", folder).replace("_", " ")


@dataclass(frozen=True)
class Preprocessing:
    """The evaluation transform's settings: resize the short side, centre-crop, normalise."""

    image_size: int
    resize_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    @classmethod
    def for_size(cls, image_size: int) -> Preprocessing:
        return cls(image_size, resize_size(image_size))


@dataclass
class ModelMetadata:
    """metadata.json. ``metrics`` holds ``selected_epoch`` and the kept epoch's scores."""

    architecture: str
    num_classes: int
    preprocessing: Preprocessing
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    data: dict[str, dict[str, int]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    pretrained: str | None = None
    # The int8 model, when train wrote one: engine, calibration images, its accuracy and fp32's.
    int8: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    weights_file: str = MODEL_FILE
    classes_file: str = CLASSES_FILE

    @property
    def selected_epoch(self) -> int:
        return int(self.metrics.get("selected_epoch", 0))

    @property
    def scores(self) -> dict[str, float]:
        """The kept epoch's losses and accuracies (``metrics`` without ``selected_epoch``)."""
        return {k: v for k, v in self.metrics.items() if k != "selected_epoch"}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: Path) -> ModelMetadata:
        if not isinstance(data, dict):
            raise ArtifactError(f"{source} must hold a JSON object")
        if data.get("architecture") not in SUPPORTED_ARCHITECTURES:
            raise ArtifactError(f"unsupported architecture {data.get('architecture')!r} in {METADATA_FILE}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}  # newer writers may add keys
        try:
            prep = values.pop("preprocessing")
            values["preprocessing"] = Preprocessing(**{**prep, "mean": tuple(prep["mean"]),
                                                       "std": tuple(prep["std"])})
            meta = cls(**values)
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{source} is not a model's metadata ({type(exc).__name__}: {exc})") from exc
        for key in ("weights_file", "classes_file"):
            if not plain_name(getattr(meta, key)):
                raise ArtifactError(f"{source}: {key} must be a file name in the model folder, "
                                    f"got {getattr(meta, key)!r}")
        return meta


@dataclass
class ModelArtifact:
    """A model folder: its metadata and class names (the weights stay on disk until loaded)."""

    folder: Path
    metadata: ModelMetadata
    classes: list[str]

    @property
    def weights_path(self) -> Path:
        return self.folder / self.metadata.weights_file

    @property
    def int8_weights_path(self) -> Path | None:
        """The int8 model's state dict, None when train wrote none."""
        return self.folder / INT8_FILE if self.metadata.int8 else None

    @property
    def breeds(self) -> list[str]:
        return [display_name(c) for c in self.classes]

    @staticmethod
    def is_model(folder: Path) -> bool:
        return (Path(folder) / METADATA_FILE).is_file()

    @classmethod
    def locate(cls, path: Path) -> Path:
        """The model folder in a model folder, an /opt/ml tree or a `dogctl` run folder."""
        path = Path(path)
        for candidate in (path, path / "model", path / "opt_ml" / "model"):
            if cls.is_model(candidate):
                return candidate
        raise ArtifactError(f"{path} holds no model written by train (no {METADATA_FILE})")

    @classmethod
    def read(cls, folder: Path) -> ModelArtifact:
        """Read and check metadata.json and classes.json (raises :class:`ArtifactError`)."""
        path = Path(folder) / METADATA_FILE
        if not path.is_file():
            raise ArtifactError(f"{path} is missing: is this a model folder written by `train`?")
        meta = ModelMetadata.from_json(read_json(path, ArtifactError), path)
        folder = path.parent
        classes = read_json(folder / meta.classes_file, ArtifactError)
        if not isinstance(classes, list) or len(classes) != meta.num_classes:
            raise ArtifactError(f"{CLASSES_FILE} does not list {meta.num_classes} class names")
        return cls(folder, meta, [str(c) for c in classes])

    def write(self, weights: bytes, int8_weights: bytes | None = None) -> None:
        """Write the weights (``torch.save`` bytes; the int8 model's too when metadata.int8
        describes one), classes and metadata, each atomically; metadata.json last, so a folder
        that has it is complete."""
        if bool(int8_weights) != bool(self.metadata.int8):
            raise ValueError("int8 weights and metadata.int8 go together")
        atomic_write_bytes(self.weights_path, weights)
        if int8_weights:
            atomic_write_bytes(self.folder / INT8_FILE, int8_weights)
        atomic_write_bytes(self.folder / self.metadata.classes_file,
                           json.dumps(self.classes, indent=1).encode())
        atomic_write_bytes(self.folder / METADATA_FILE,
                           json.dumps(self.metadata.to_json(), indent=1).encode())

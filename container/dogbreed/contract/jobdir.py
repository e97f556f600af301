"""Where the parts of a training job are, in any of the folders a job leaves behind.

A job folder is one of:

- an /opt/ml tree after ``train`` (``model/``, ``output/data``, ``output/tensors``,
  ``output/profiler``);
- a local run folder of ``dogctl`` (the tree above in ``opt_ml/``);
- a SageMaker job downloaded by ``dogctl`` (``model/`` and ``output/`` extracted
  from model.tar.gz and output.tar.gz, ``debug-output/``, ``profiler-output/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.contract.artifact import METADATA_FILE, ModelArtifact
from dogbreed.errors import UserError

# Files a job leaves in output/data beside the rules' verdicts and the evaluation.
REPORT_FILE = "report.html"
EVALUATION_FILE = "evaluation.json"  # per-breed accuracy and confusions (train writes it)
EXAMPLES_DIR = "examples"  # its thumbnails, in output/data; the report embeds only these
TUNING_FILE = "tuning.json"  # a tuning study's trials, copied in by `dogctl train --hyperparameters`
STEP_LOSSES_FILE = "step-losses.json"  # the training loss per step: the report's curve without tensors


class JobDirError(UserError):
    """The folder is not a training job's; the message says what was expected."""


def _first(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.exists()), None)


@dataclass(frozen=True)
class JobDir:
    root: Path
    model: Path
    output_data: Path
    tensors: Path | None
    profiler: Path | None

    @classmethod
    def find(cls, folder: Path) -> JobDir:
        folder = Path(folder)
        root = folder / "opt_ml" if (folder / "opt_ml").is_dir() else folder
        model = root / "model"
        if not ModelArtifact.is_model(model):
            raise JobDirError(
                f"{folder} is not a finished training job: no model/{METADATA_FILE} (expected an "
                "/opt/ml tree after `train`, a `dogctl` run folder or a downloaded SageMaker job)"
            )
        return cls(
            root=root,
            model=model,
            output_data=root / "output" / "data",
            tensors=_first(root / "output" / "tensors", root / "debug-output"),
            profiler=_first(root / "output" / "profiler", root / "profiler-output"),
        )

    @property
    def name(self) -> str:
        return (self.root.parent if self.root.name == "opt_ml" else self.root).name

    def artifact(self) -> ModelArtifact:
        return ModelArtifact.read(self.model)

    def read_json(self, relative: str) -> Any:
        """A JSON file of output/data (or the job root), None when absent."""
        for base in (self.output_data, self.root):
            path = base / relative
            if path.is_file():
                return json.loads(path.read_text())
        return None

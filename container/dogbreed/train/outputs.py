"""What a finished (or stopped) run leaves behind: the model artefact with its metadata, the
int8 model, the evaluation details and, with the Debugger on, the rule verdicts and the report.

Only the main process writes. Everything after the fp32 model is an extra: a failure there is a
warning, never a failed job.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import torch
from torch.utils.data import Subset

from dogbreed import __version__
from dogbreed.contract.artifact import ModelArtifact, ModelMetadata, Preprocessing
from dogbreed.contract.hyperparameters import Hyperparameters
from dogbreed.contract.opt_ml import OptML
from dogbreed.data.preprocess import torchvision_version
from dogbreed.data.splits import Split
from dogbreed.model import quantize
from dogbreed.model.hardware import Placement
from dogbreed.model.network import ARCHITECTURE
from dogbreed.train import evaluation
from dogbreed.train.batches import BatchSource
from dogbreed.train.checkpoint import TrainingState

log = logging.getLogger(__name__)
Int8 = tuple[bytes, dict[str, Any]]  # the int8 model's torch.save bytes, and its metadata


class Outputs:
    """Writes the run's results to /opt/ml/model and /opt/ml/output/data."""

    def __init__(self, opt: OptML, params: Hyperparameters, splits: dict[str, Split], placement: Placement,
                 processes: int, model: torch.nn.Module, source: BatchSource):
        self.opt, self.params, self.splits, self.placement = opt, params, splits, placement
        self.processes, self.model, self.source = processes, model, source
        self.classes = splits["train"].classes

    def model_files(self, state: TrainingState, scores: dict[str, float], seconds: float, *,
                    stopped: bool = False, int8: Int8 | None = None) -> None:
        """The model artefact of the weights now in ``model``."""
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, buffer)
        params = self.params
        metadata = ModelMetadata(
            architecture=ARCHITECTURE,
            num_classes=len(self.classes),
            preprocessing=Preprocessing.for_size(params.image_size),
            pretrained="imagenet" if params.pretrained else None,
            int8=int8[1] if int8 else {},
            hyperparameters=asdict(params),
            metrics={"selected_epoch": int(state.best["epoch"]), **scores},
            history=state.history,
            data={name: {"images": len(s.samples), "skipped": len(s.skipped)}
                  for name, s in self.splits.items()},
            training={
                "seconds": round(seconds, 1),
                "processes": self.processes,
                "device": self.placement.describe(),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "stopped_early": state.stopped_early,
                "stopped_by_sigterm": stopped,
            },
            versions={"dogbreed": __version__, "torch": torch.__version__,
                      "torchvision": torchvision_version()},
        )
        ModelArtifact(self.opt.model_dir, metadata, list(self.classes)).write(
            buffer.getvalue(), int8[0] if int8 else None)
        log.info("model written to %s", self.opt.model_dir)

    def evaluation(self, predictions: dict[str, list[evaluation.Prediction]]) -> None:
        """Per-breed accuracy and confusions of each split (evaluation.json)."""
        summaries = {split: evaluation.summarize(self.classes, preds) for split, preds in predictions.items()}
        try:
            evaluation.write(self.opt.output_data_dir, summaries)
        except OSError as exc:
            log.warning("evaluation details not written: %s", exc)

    def rules_and_report(self) -> None:
        """Debugger rules on this job's tensors, then the HTML report; never fails the run."""
        try:
            from dogbreed.contract.jobdir import JobDir
            from dogbreed.debugger.report import save_step_losses, write_report
            from dogbreed.debugger.rules import evaluate_rules
            from dogbreed.debugger.verdicts import log_verdicts

            results = evaluate_rules(self.opt.root)
            log_verdicts(results)
            save_step_losses(JobDir.find(self.opt.root))
            path = write_report(self.opt.root, rule_results=results)
            log.info("report written to %s", path)
        except Exception as exc:  # noqa: BLE001 - the model is saved; the analysis is a bonus
            log.warning("rules/report skipped after an error: %s: %s", type(exc).__name__, exc)

    def int8(self, reference: list[evaluation.Prediction]) -> Int8 | None:
        """The int8 model and its metadata, or None: calibrated on training photos, scored on the
        test split (else valid) beside fp32's ``reference`` predictions."""
        train = self.splits["train"]
        count = min(self.params.int8_calibration_images, len(train.samples))
        if not count:
            return None
        started = time.monotonic()
        name = "test" if "test" in self.splits else "valid"
        split = self.splits[name]
        source = self.source
        try:
            seeded = torch.Generator().manual_seed(self.params.seed)
            chosen = torch.randperm(len(train.samples), generator=seeded)[:count].tolist()
            images = Subset(source.eval_images(train), chosen)
            batches = (inputs for inputs, *_ in source.loader(images, shuffle_seed=None))
            model = quantize.calibrate(self.model, batches, self.params.image_size)
            positions = {path: i for i, (path, _) in enumerate(split.samples)}
            fp32 = {positions[path]: predicted for path, _, predicted in reference}
            scored = source.loader(source.eval_images(split), shuffle_seed=None)
            scores = quantize.compare(model, scored, fp32)
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
        except Exception as exc:  # noqa: BLE001 - the fp32 model is the product, int8 an extra
            log.warning("no int8 model written: %s: %s", type(exc).__name__, exc)
            return None
        log.info("int8 model: %s accuracy %.4f (fp32: %.4f), the same top-1 as fp32 for %.1f%% of %d images; "
                 "calibrated on %d training images (%.1fs)", name, scores["acc"], scores["fp32_acc"],
                 100 * scores["agreement"], scores["images"], count, time.monotonic() - started)
        return buffer.getvalue(), {"engine": quantize.ENGINE, "calibration_images": count, "split": name,
                                   **scores}

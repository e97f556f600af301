"""One pass over the training batches, and one evaluation of a split: the steps themselves.

Both take their batches, network and collectives from the caller, so they run the same in one
process (in tests) and in every rank of a distributed job.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

import torch

from dogbreed.data.splits import DataError, Split
from dogbreed.model.hardware import Placement
from dogbreed.train import evaluation
from dogbreed.train.batches import BatchSource, EvalBatch, TrainBatch
from dogbreed.train.callbacks import Callback, EpochProgress
from dogbreed.train.collectives import Collectives
from dogbreed.train.network import TrainedNetwork
from dogbreed.train.optimisation import Optimisation


def to_device(placement: Placement, inputs: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Photos (in the placement's memory format) or features, and their labels, to the device."""
    layout = placement.memory_format if inputs.dim() == 4 else torch.preserve_format
    return (inputs.to(placement.device, non_blocking=True, memory_format=layout),
            labels.to(placement.device, non_blocking=True))


class EpochRunner:
    """Runs epochs and evaluations of ``net`` on ``source``'s batches."""

    def __init__(self, network: TrainedNetwork, source: BatchSource, optimisation: Optimisation,
                 callbacks: Callback, collectives: Collectives, placement: Placement):
        self.network, self.source = network, source
        self.optimisation, self.callbacks = optimisation, callbacks
        self.collectives, self.placement = collectives, placement

    def train(self, epoch: int, epochs: int, step: int) -> tuple[dict[str, float], int]:
        """Epoch ``epoch`` from step ``step``: its metrics and the next step's number."""
        batches, count = self.source.train_batches(epoch)
        progress = EpochProgress(epoch, epochs, count)
        device = self.placement.device
        progress.loss_sum, progress.correct = progress.loss_sum.to(device), progress.correct.to(device)
        self.network.train_mode()
        join = self.network.net.join() if self.collectives.world.distributed else contextlib.nullcontext()
        self.callbacks.epoch_begin(progress, step)
        with join:
            step = self._steps(batches, progress, step)
        self.callbacks.epoch_end(progress)
        seconds = time.monotonic() - progress.started
        total_loss, correct, seen, seconds_sum = self.collectives.all_sum(
            [progress.loss_sum.item(), float(progress.correct.item()), float(progress.seen), seconds])
        return {"train_loss": total_loss / max(1.0, seen), "train_acc": correct / max(1.0, seen),
                "images_per_second": seen / max(1e-9, seconds_sum / self.collectives.world.size)}, step

    def _steps(self, batches: Iterable[TrainBatch], progress: EpochProgress, step: int) -> int:
        optimisation, callbacks = self.optimisation, self.callbacks
        for progress.batch, (inputs, labels, bad) in enumerate(batches, 1):
            callbacks.data_ready()
            if bad:
                self.source.note_undecodable(bad)
            if inputs.numel() == 0:
                continue
            inputs, labels = to_device(self.placement, inputs, labels)
            with optimisation.autocast():
                logits = self.network.net(inputs)
                loss = optimisation.loss(logits, labels)
            optimisation.backward(loss)
            callbacks.backward_done()
            optimisation.step()
            progress.loss_sum += loss.detach().double() * labels.numel()
            progress.correct += (logits.detach().argmax(1) == labels).sum()
            progress.seen += labels.numel()
            callbacks.step_end(progress, step)
            step += 1
        return step

    @torch.inference_mode()
    def evaluate(self, split: Split, *, details: bool = False) -> dict[str, Any]:
        """Loss (the training loss function) and accuracy on ``split``, all processes together;
        with ``details``, also every prediction as (path, true, predicted) on every process."""
        self.network.eval_mode()
        self.callbacks.eval_begin()
        loss_sum, correct, seen = 0.0, 0, 0
        predictions: list[evaluation.Prediction] = []
        batch: EvalBatch
        for batch in self.source.eval_batches(split):
            inputs, labels, indices, bad = batch
            if bad:
                self.source.note_undecodable(bad)
            if inputs.numel() == 0:
                continue
            inputs, labels = to_device(self.placement, inputs, labels)
            with self.optimisation.autocast():
                logits = self.network.head(inputs)
                loss = self.optimisation.loss(logits.float(), labels)
            predicted = logits.argmax(1)
            loss_sum += loss.item() * labels.numel()
            correct += int((predicted == labels).sum().item())
            seen += labels.numel()
            if details:  # indices are positions in split.samples (Subset passes them through)
                predictions += [(split.samples[i][0], t, p) for i, t, p in
                                zip(indices, labels.tolist(), predicted.tolist(), strict=True)]
        total_loss, total_correct, total_seen = self.collectives.all_sum(
            [loss_sum, float(correct), float(seen)])
        if total_seen == 0:
            raise DataError(f"{split.name}: no image could be decoded")
        result: dict[str, Any] = {"loss": total_loss / total_seen, "acc": total_correct / total_seen}
        if details:
            result["predictions"] = [p for part in self.collectives.gather(predictions) for p in part]
        return result

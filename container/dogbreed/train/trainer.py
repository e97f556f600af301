"""The training run: the parts wired together, and the epochs from the newest checkpoint to the end.

Each part does one job and is tested alone: :mod:`~dogbreed.train.batches` (where batches come
from), :mod:`~dogbreed.train.optimisation` (AdamW, loss, precision, schedule),
:mod:`~dogbreed.train.collectives` (what processes do together), :mod:`~dogbreed.train.callbacks`
(Debugger, profiler, progress), :mod:`~dogbreed.train.epoch` (the steps),
:mod:`~dogbreed.train.checkpoint` and :mod:`~dogbreed.train.outputs`. :class:`Trainer` only wires
them and runs the epochs; it runs in-process as it runs in a job.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import asdict
from typing import Any

import torch

from dogbreed.contract import metrics
from dogbreed.contract.environment import FEATURE_CACHE
from dogbreed.contract.hyperparameters import Hyperparameters
from dogbreed.contract.opt_ml import OptML
from dogbreed.data.splits import Split, check_same_classes, scan_split
from dogbreed.debugger import hook as debugger
from dogbreed.debugger.profiler import ProfilerSettings, StepTimer, SystemMonitor
from dogbreed.model.hardware import place
from dogbreed.train import checkpoint
from dogbreed.train.batches import BatchSource
from dogbreed.train.callbacks import Callback, Callbacks, Debugger, Profiler, ProgressLog
from dogbreed.train.checkpoint import TrainingState
from dogbreed.train.collectives import Collectives
from dogbreed.train.distributed import World, init_process_group
from dogbreed.train.epoch import EpochRunner
from dogbreed.train.network import TrainedNetwork
from dogbreed.train.optimisation import Optimisation
from dogbreed.train.outputs import Outputs

log = logging.getLogger(__name__)
# Hyperparameters that do not change the result; a checkpoint made with other values resumes.
RESULT_NEUTRAL = frozenset({"workers", "progress_seconds", "profiler_interval_ms", "allow_cpu_fallback",
                            "int8_calibration_images", "decode_cache", "debugger", "debug_interval"})


class TrainingStopped(BaseException):
    """SIGTERM arrived (SageMaker stops the job, hits MaxRuntimeInSeconds, stops a tuning trial
    early, or reclaims spot capacity). A BaseException, as KeyboardInterrupt, so that no
    ``except Exception`` on the way (logging, decoding) swallows it. ``saved``: what was kept."""

    def __init__(self, saved: str = ""):
        super().__init__(saved)
        self.saved = saved


def scan(opt: OptML, world: World) -> dict[str, Split]:
    """The channels' splits, checked to share the training split's classes, and logged."""
    cache = opt.feature_cache_dir  # unchanged files' header checks are not repeated
    splits = {name: scan_split(name, path, cache_dir=cache, by_content=opt.cache_by_content)
              for name, path in opt.channels().items()}
    for name in ("valid", "test"):
        if name in splits:
            check_same_classes(splits["train"], splits[name])
    if world.is_main:
        for split in splits.values():
            counts = split.counts()
            log.info("%s: %d images in %d classes (%d to %d per class) from %s", split.name,
                     len(split.samples), len(split.classes), min(counts), max(counts), split.root)
            if split.skipped:
                log.warning(split.skipped_summary())
    return splits


class Trainer:
    """One training process (the only one, or one rank of DistributedDataParallel).

    ``callbacks`` are called beside the built-in ones (Debugger, profiler, progress)."""

    def __init__(self, opt: OptML, params: Hyperparameters, world: World, callbacks: list[Callback] = ()):
        self.opt, self.params, self.world = opt, params, world
        head_only = params.finetune == "head"
        self.on_features = head_only and params.feature_views > 0  # the head trains on cached features
        self.placement = place(world.local_rank, world.local_size, amp=params.amp, workers=params.workers,
                               allow_cpu_fallback=params.allow_cpu_fallback)
        if params.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = not params.deterministic
        if world.distributed:
            init_process_group(world, self.placement.device)
        self.collectives = Collectives(world, self.placement.device)
        self.splits = scan(opt, world)
        self.classes = self.splits["train"].classes
        self.network = TrainedNetwork.build(len(self.classes), pretrained=params.pretrained, seed=params.seed,
                                            head_only=head_only, on_features=self.on_features,
                                            placement=self.placement, world=world)
        total_steps = params.steps(len(self.splits["train"].samples), world.size)
        self.optimisation = Optimisation(self.network.trainable, params, self.placement.amp_dtype,
                                         total_steps)
        self.hook_config = debugger.job_config(
            opt.debughookconfig_file, params.debugger, opt.output_dir / debugger.TENSORS_DIR,
            steps=total_steps, interval=params.debug_interval, announce=world.is_main)
        progress = ProgressLog(params.progress_seconds if world.is_main else 0, params.batch_size)
        self.callbacks = Callbacks([self._debugger(), self._profiler(), progress, *callbacks])
        self.source = BatchSource(opt, params, self.splits, self.placement, self.collectives,
                                  self.network.model, self.on_features, self.optimisation.autocast)
        self.epochs = EpochRunner(self.network, self.source, self.optimisation, self.callbacks,
                                  self.collectives, self.placement)
        self.outputs = Outputs(opt, params, self.splits, self.placement, world.size, self.network.model,
                               self.source)
        self.state = TrainingState()  # what checkpoints carry besides the weights

    def _debugger(self) -> Debugger:
        hook = debugger.DebugHook.from_config(self.hook_config) if self.hook_config else debugger.DebugHook()
        # On features the backbone does not run in training: the hook sees the layer that does.
        hook.register(self.network.head, self.optimisation.criterion)
        if self.on_features and hook.active and self.world.is_main:
            log.info("debugger: on the backbone's cached features only the final layer runs: its weights "
                     "and gradients and the losses are saved, no tensor of the frozen backbone")
        return Debugger(hook)

    def _profiler(self) -> Profiler:
        opt, world = self.opt, self.world
        profiling = ProfilerSettings.resolve(opt.profilerconfig_file, opt.output_dir / "profiler",
                                             self.params.profiler_interval_ms)
        timer = StepTimer(profiling.directory if profiling.enabled and world.is_main else None,
                          self.placement.cuda)
        monitor = None
        if profiling.system_interval and world.local_rank == 0:
            monitor = SystemMonitor(profiling.directory, profiling.system_interval,
                                    opt.resource_config().current_host)
        return Profiler(timer, monitor)

    # -- checkpoints -------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        params = {k: v for k, v in asdict(self.params).items() if k not in RESULT_NEUTRAL}
        return {"hyperparameters": params, "classes": self.classes,
                "train_images": len(self.splits["train"].samples), "world_size": self.world.size}

    def save_checkpoint(self, epoch: int) -> None:
        if self.world.is_main:
            checkpoint.save(self.opt.checkpoint_dir, epoch, {
                "fingerprint": self.fingerprint(), **self.network.part.entries(),
                **self.optimisation.state_dict(), **self.state.to_checkpoint(epoch)})

    def resume(self) -> int:
        """Load the newest checkpoint (rank 0 reads it and sends it to the others, so hosts need
        not hold a copy); return the first epoch still to run."""
        state = self.collectives.broadcast(
            checkpoint.load_latest(self.opt.checkpoint_dir) if self.world.is_main else None)
        if state is None:
            return 1
        checkpoint.check_fingerprint(state["fingerprint"], self.fingerprint(), self.opt.checkpoint_dir)
        self.network.part.restore(state, self.opt.checkpoint_dir)
        self.state = TrainingState.from_checkpoint(state)
        self.optimisation.load_state_dict(state, self.state.step)
        log.info("resumed from the checkpoint of epoch %d (best so far: epoch %d, valid_acc %.4f)",
                 state["epoch"], self.state.best["epoch"], self.state.best["valid_acc"])
        return int(state["epoch"]) + 1

    # -- the run -----------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every epoch still to run, then the outputs; after SIGTERM the best epoch so far."""
        self._announce()
        start_epoch = self.resume()
        self.callbacks.run_begin()
        try:
            return self._epochs(start_epoch)
        except TrainingStopped:
            raise TrainingStopped(self.save_on_stop()) from None
        finally:
            self.callbacks.run_end()

    def _announce(self) -> None:
        params = self.params
        if not self.world.is_main:
            return
        log.info("device: %s; %d process(es) in all", self.placement.describe(), self.world.size)
        log.info("hyperparameters: %s", " ".join(f"{k}={v}" for k, v in asdict(params).items()))
        if self.on_features:
            views = (f"{params.feature_views} augmented view(s) of each training image" if params.augment
                     else "one unaugmented view of each image")
            where = self.opt.feature_cache_dir or f"this run only ({FEATURE_CACHE} unset)"
            log.info("finetune=head: the head trains on the frozen backbone's features, computed once (%s); "
                     "feature cache: %s", views, where)

    def _epochs(self, start_epoch: int) -> dict[str, Any]:
        params, state = self.params, self.state
        started = time.monotonic()
        for epoch in range(start_epoch, params.epochs + 1):
            if state.stopped_early:
                break
            epoch_started = time.monotonic()
            train, state.step = self.epochs.train(epoch, params.epochs, state.step)
            valid = self.epochs.evaluate(self.splits["valid"])
            record = {"epoch": epoch, **train, "valid_loss": valid["loss"], "valid_acc": valid["acc"],
                      "lr": self.optimisation.lr, "epoch_seconds": time.monotonic() - epoch_started}
            state.history.append(record)
            state.update_best(epoch, record, params.patience, self.network.part.weights())
            if self.world.is_main:
                fields = {k: v for k, v in record.items() if k != "epoch"}
                log.info(metrics.format_epoch(epoch, params.epochs, **fields))
                if not math.isfinite(record["train_loss"]):
                    log.warning("the training loss is not finite: training diverged; lower lr")
            self.save_checkpoint(epoch)
            if state.stopped_early and self.world.is_main:
                log.info("early stopping: valid_acc has not improved for %d epochs (best: epoch %d)",
                         params.patience, state.best["epoch"])
        return self.finish(time.monotonic() - started)

    def finish(self, seconds: float) -> dict[str, Any]:
        """Restore the best epoch's weights, test them, write the model artefacts, the evaluation
        details and, with the Debugger on, the rule verdicts and the report."""
        best = self.state.best
        if self.state.best_state is not None:
            self.network.part.load(self.state.best_state)
        scores = {"valid_loss": best["valid_loss"], "valid_acc": best["valid_acc"]}
        predictions = {"valid": self.epochs.evaluate(self.splits["valid"], details=True)["predictions"]}
        if "test" in self.splits:
            test = self.epochs.evaluate(self.splits["test"], details=True)
            scores.update(test_loss=test["loss"], test_acc=test["acc"])
            predictions["test"] = test["predictions"]
        self.callbacks.close()
        self.collectives.barrier()  # every process's tensors are written before the rules read them
        if self.world.is_main:
            int8 = self.outputs.int8(predictions.get("test") or predictions["valid"])
            self.outputs.model_files(self.state, scores, seconds, int8=int8)
            self.outputs.evaluation(predictions)
            log.info(metrics.format_final(int(best["epoch"]), scores))
            if self.source.undecodable:
                log.warning("%d image(s) could not be decoded and were skipped", len(self.source.undecodable))
            if self.hook_config is not None:  # even if the hook failed on the way
                self.outputs.rules_and_report()
        return scores

    def save_on_stop(self) -> str:
        """After SIGTERM (SageMaker allows 120 s before SIGKILL): write the best epoch so far as the
        model, without testing it (no collective step: the other processes are stopping too); the
        checkpoints of finished epochs are already on disk. What was kept, in words."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the writes
        best = self.state.best
        if not self.world.is_main:
            return ""
        if self.state.best_state is None:
            return "no epoch had finished: no model written"
        started = time.monotonic()
        self.network.part.load(self.state.best_state)
        scores = {"valid_loss": best["valid_loss"], "valid_acc": best["valid_acc"]}
        self.outputs.model_files(self.state, scores, sum(h["epoch_seconds"] for h in self.state.history),
                                 stopped=True)
        log.info("stopped: the best model so far (epoch %d, valid_acc %.4f) written to %s in %.1fs",
                 best["epoch"], best["valid_acc"], self.opt.model_dir, time.monotonic() - started)
        return (f"the best model so far (epoch {int(best['epoch'])}, valid_acc {best['valid_acc']:.4f}) "
                f"is in {self.opt.model_dir}")

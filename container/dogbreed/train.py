"""``train``: fine-tune ResNet18 on the image folders of SageMaker's /opt/ml contract.

What SageMaker runs as ``docker run IMAGE train``. Reads hyperparameters and
channels from /opt/ml (or ``$OPT_ML``), prints one metric line per epoch,
checkpoints every epoch and resumes from the newest checkpoint, writes the
model to /opt/ml/model and, on any error, a one-line reason to
/opt/ml/output/failure before exiting non-zero.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import math
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing import SignalException
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from . import __version__, checkpoint, debugger, evaluation, metrics, quantize
from .artifact import ModelArtifact, ModelMetadata, Preprocessing
from .checkpoint import ModelPart, TrainingState
from .data import DataError, Split, check_same_classes, scan_split
from .debugger import DebugHook
from .decoded import DecodedCache, DecodedImages, cache_folder, remove_abandoned
from .distributed import WorkerFailed, World, init_process_group, launch, record_failure, worker_world
from .errors import UserError
from .features import (
    FeatureCache,
    Features,
    FeatureStore,
    SeededView,
    backbone_of,
    extract,
    merge,
)
from .hardware import Placement, place, processes_per_host
from .hyperparameters import Hyperparameters, parse
from .loader import ImageFolder, collate
from .model import ARCHITECTURE, build, freeze_backbone, set_train_mode
from .opt_ml import ENV_FEATURE_CACHE, OptML
from .preprocess import decode_side, eval_transform, torchvision_version, train_transform
from .profiler import ProfilerSettings, StepTimer, SystemMonitor
from .toolkit import hand_over, user_program
from .weights import expected_sha256

log = logging.getLogger("dogbreed.train")
# Training batches: (inputs, labels, undecodable); evaluation's add positions in split.samples.
TrainBatch = tuple[torch.Tensor, torch.Tensor, list[str]]
EvalBatch = tuple[torch.Tensor, torch.Tensor, list[int], list[str]]
# Hyperparameters that do not change the result; a checkpoint made with other values resumes.
RESULT_NEUTRAL = frozenset({"workers", "progress_seconds", "profiler_interval_ms", "allow_cpu_fallback",
                            "int8_calibration_images", "decode_cache",
                            "debugger", "debug_interval"})


class TrainingStopped(BaseException):
    """SIGTERM arrived (SageMaker stops the job, hits MaxRuntimeInSeconds, stops a tuning trial
    early, or reclaims spot capacity). A BaseException, as KeyboardInterrupt, so that no
    ``except Exception`` on the way (logging, decoding) swallows it. ``saved``: what was kept."""

    def __init__(self, saved: str = ""):
        super().__init__(saved)
        self.saved = saved


# Failures whose message is the whole story: reported as they are, without a traceback.
EXPLAINED = (UserError, WorkerFailed)


def setup_logging(world: World | None = None) -> None:
    rank = world.rank if world else 0
    prefix = f"[rank {rank}] " if world and world.distributed else ""
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s %(levelname)s {prefix}%(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stdout,
        force=True,
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """Every epoch's randomness depends on (seed, epoch) only, so a resumed run repeats it."""
    return (seed * 1_000_003 + epoch) % (2**63)


class Trainer:
    """One training process (the only one, or one rank of DistributedDataParallel)."""

    def __init__(self, opt: OptML, params: Hyperparameters, world: World):
        self.opt, self.params, self.world = opt, params, world
        self.head_only = params.finetune == "head"
        # The frozen backbone runs once per image and view; the head trains on its features.
        self.on_features = self.head_only and params.feature_views > 0
        self.placement: Placement = place(world.local_rank, world.local_size, amp=params.amp,
                                          workers=params.workers,
                                          allow_cpu_fallback=params.allow_cpu_fallback)
        if params.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = not params.deterministic
        if world.distributed:
            init_process_group(world, self.placement.device)
        self.splits = self._scan()
        self.classes = self.splits["train"].classes
        torch.manual_seed(params.seed)
        self.model = build(len(self.classes), pretrained=params.pretrained)
        trainable = freeze_backbone(self.model) if self.head_only else list(self.model.parameters())
        self.part = ModelPart(self.model, self.head_only)  # the weights checkpoints carry
        device = self.placement.device
        self.model.to(device, memory_format=self.placement.memory_format)
        # What training and evaluation run: on features, the final layer alone.
        self.head: nn.Module = self.model.fc if self.on_features else self.model
        self.net: nn.Module = self.head
        if world.distributed:
            self.net = DistributedDataParallel(
                self.head, device_ids=[device.index] if self.placement.cuda else None
            )
        self.optimizer = torch.optim.AdamW(
            trainable, lr=params.lr, eps=params.eps, weight_decay=params.weight_decay
        )
        fp16 = self.placement.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=params.label_smoothing)
        per_process = math.ceil(len(self.splits["train"].samples) / world.size)
        self.hook_config = debugger.job_config(
            opt.debughookconfig_file, params.debugger, opt.output_dir / debugger.TENSORS_DIR,
            steps=params.epochs * math.ceil(per_process / params.batch_size), interval=params.debug_interval,
            announce=world.is_main)
        self.hook = DebugHook.from_config(self.hook_config) if self.hook_config else DebugHook()
        # On features the backbone does not run in training: the hook sees the layer that does.
        self.hook.register(self.head, self.criterion)
        if self.on_features and self.hook.active and world.is_main:
            log.info("debugger: on the backbone's cached features only the final layer runs: its weights "
                     "and gradients and the losses are saved, no tensor of the frozen backbone")
        resources = opt.resource_config()
        profiling = ProfilerSettings.resolve(opt.profilerconfig_file, opt.output_dir / "profiler",
                                             params.profiler_interval_ms)
        self.profiler_dir = profiling.directory if profiling.enabled else None
        self.timer = StepTimer(self.profiler_dir if world.is_main else None, self.placement.cuda)
        self.monitor: SystemMonitor | None = None
        if profiling.system_interval and world.local_rank == 0:
            self.monitor = SystemMonitor(profiling.directory, profiling.system_interval,
                                         resources.current_host)
        self.train_set = ImageFolder(
            self.splits["train"].samples,
            train_transform(params.image_size, params.augment),
            decode_side(params.image_size, train=params.augment),
        )
        self.steps_per_epoch = math.ceil(
            math.ceil(len(self.train_set) / world.size) / params.batch_size
        )
        self.total_steps = self.steps_per_epoch * params.epochs
        self.state = TrainingState()  # what checkpoints carry besides the weights
        self.undecodable: set[str] = set()
        self.features: FeatureStore | None = None
        if self.on_features:
            amp = self.placement.amp_dtype
            self.features = FeatureStore(
                FeatureCache(opt.feature_cache_dir), weights_sha256=expected_sha256(),
                precision=str(amp).replace("torch.", "") if amp else "float32", device=device.type,
                seed=params.seed, compute=self._compute_features, all_agree=self._all_agree,
                writes=world.local_rank == 0)
        self.backbone = backbone_of(self.model)  # the model's own modules, up to fc's input
        self.decoded_cache: DecodedCache | None = None
        self.decoded: dict[tuple[str, int], DecodedImages | None] = {}
        if params.decode_cache:
            # One temporary folder per run and host: a distributed run's workers share their launcher.
            run = os.getppid() if world.distributed else os.getpid()
            folder, temporary = cache_folder(opt.feature_cache_dir, run)
            if temporary and world.local_rank == 0:
                for gone in remove_abandoned():
                    log.info("decoded images: removed %s, left by a run that was killed", gone)
                atexit.register(shutil.rmtree, folder, True)
            self.decoded_cache = DecodedCache(folder, self.placement.loader_workers)

    # -- data --------------------------------------------------------------
    def _scan(self) -> dict[str, Split]:
        channels = self.opt.channels()
        cache = self.opt.feature_cache_dir  # unchanged files' header checks are not repeated
        splits = {name: scan_split(name, path, cache_dir=cache) for name, path in channels.items()}
        for name in ("valid", "test"):
            if name in splits:
                check_same_classes(splits["train"], splits[name])
        if self.world.is_main:
            for split in splits.values():
                counts = split.counts()
                log.info("%s: %d images in %d classes (%d to %d per class) from %s",
                         split.name, len(split.samples), len(split.classes), min(counts),
                         max(counts), split.root)
                if split.skipped:
                    log.warning(split.skipped_summary())
        return splits

    def _eval_images(self, split: Split) -> ImageFolder:
        size = self.params.image_size
        return ImageFolder(split.samples, eval_transform(size), decode_side(size, train=False))

    def _decoded_images(self, split: Split, side: int) -> DecodedImages | None:
        """``split``'s images decoded at ``side`` once (by one process per host), for the splits
        read every epoch; None: decode as they are read."""
        if self.decoded_cache is None or split.name not in ("train", "valid"):
            return None
        memo = (split.name, side)
        if memo not in self.decoded:
            paths = [path for path, _ in split.samples]
            digest = split.digest()
            # The host's first process finds or writes the entry; the others open it after.
            found = None
            if self.world.local_rank == 0:
                found = self.decoded_cache.get(split.name, paths, digest, side)
            if self.world.distributed:
                dist.barrier()
                if found is None:
                    found = self.decoded_cache.get(split.name, paths, digest, side, writes=False)
            self.decoded[memo] = found
        return self.decoded[memo]

    def _eval_loader(self, split: Split) -> DataLoader:
        dataset = self._eval_images(split)
        dataset.decoded = self._decoded_images(split, dataset.decode_side)
        shard = Subset(dataset, range(self.world.rank, len(dataset), self.world.size))
        return self._loader(shard, shuffle_seed=None)

    def _eval_batches(self, split: Split) -> Iterable[EvalBatch]:
        """(inputs, labels, positions in split.samples, undecodable) of this process's share:
        images, or on features the backbone's features of the same images."""
        if self.features is None:
            yield from self._eval_loader(split)
            return
        found = self._split_features(split)
        mine = torch.arange(self.world.rank, len(found), self.world.size)
        for rows in mine.split(self.params.batch_size):
            yield found.features[rows], found.labels[rows], found.indices[rows].tolist(), []

    # -- features (finetune=head) --------------------------------------------
    def _split_features(self, split: Split, view: int | None = None) -> Features:
        """The backbone's features of ``split``: the evaluation transform's, or with ``view`` that
        augmented view of the training set's."""
        assert self.features is not None
        if view is None:
            images = self._eval_images(split)
        else:
            images = ImageFolder(split.samples, train_transform(self.params.image_size, True),
                                 decode_side(self.params.image_size, train=True))
        found = self.features.get(split, images, view)
        self._note_undecodable(found.undecodable)
        return found

    def _train_features(self, epoch: int) -> Features:
        """Epoch ``epoch``'s training features: view (epoch - 1) mod feature_views with augment."""
        view = (epoch - 1) % self.params.feature_views if self.params.augment else None
        return self._split_features(self.splits["train"], view)

    def _compute_features(self, dataset: Dataset) -> Features:
        """Every process computes its share of ``dataset``'s features; all get the whole."""
        if isinstance(dataset, SeededView):  # the training set's views: decode its images once for all
            images = dataset.images
            images.decoded = self._decoded_images(self.splits["train"], images.decode_side)
        shard = Subset(dataset, range(self.world.rank, len(dataset), self.world.size))
        found = extract(self.backbone, self._loader(shard, shuffle_seed=None),
                        lambda images: images.to(self.placement.device, non_blocking=True,
                                                 memory_format=self.placement.memory_format),
                        self._autocast)
        if not self.world.distributed:
            return found
        parts: list[Any] = [None] * self.world.size
        dist.all_gather_object(parts, found)
        return merge(parts)

    def _all_agree(self, held: bool) -> bool:
        """Whether every process holds something (each says whether it does)."""
        if not self.world.distributed:
            return held
        flag = torch.tensor([1 if held else 0], device=self.placement.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _loader(self, dataset: Any, shuffle_seed: int | None, sampler: Any = None) -> DataLoader:
        workers = self.placement.loader_workers
        generator = torch.Generator()
        generator.manual_seed(shuffle_seed if shuffle_seed is not None else self.params.seed)
        return DataLoader(
            dataset,
            batch_size=self.params.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.placement.cuda,
            generator=generator,
            prefetch_factor=4 if workers else None,
        )

    def _note_undecodable(self, bad: list[str]) -> None:
        new = [b for b in bad if b not in self.undecodable]
        self.undecodable.update(new)
        for description in new:
            log.warning("skipped an image that could not be decoded: %s", description)

    # -- steps -------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = self.placement.amp_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=dtype)

    def _lr_at(self, step: int) -> float:
        if self.params.lr_schedule == "constant" or self.total_steps == 0:
            return self.params.lr
        progress = min(step, self.total_steps) / self.total_steps
        return self.params.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _to_device(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (in the placement's memory format) or features, and their labels, to the device."""
        device = self.placement.device
        layout = self.placement.memory_format if inputs.dim() == 4 else torch.preserve_format
        return (inputs.to(device, non_blocking=True, memory_format=layout),
                labels.to(device, non_blocking=True))

    def _all_sum(self, values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.placement.device)
        if self.world.distributed:
            dist.all_reduce(tensor)
        return tensor.tolist()

    def _sampler(self, dataset: Any, epoch: int) -> DistributedSampler:
        sampler = DistributedSampler(dataset, num_replicas=self.world.size, rank=self.world.rank,
                                     shuffle=True, seed=self.params.seed)
        sampler.set_epoch(epoch)
        return sampler

    def _train_batches(self, epoch: int) -> tuple[Iterable[TrainBatch], int]:
        """This process's training batches of ``epoch`` as (inputs, labels, undecodable), and
        their number: images through the loader, or on features rows of the epoch's view in the
        same order (the same sampler over the same samples)."""
        seed = epoch_seed(self.params.seed, epoch)
        torch.manual_seed(seed)
        if self.features is None:
            self.train_set.decoded = self._decoded_images(self.splits["train"], self.train_set.decode_side)
            loader = self._loader(self.train_set, shuffle_seed=seed,
                                  sampler=self._sampler(self.train_set, epoch))
            return ((images, labels, bad) for images, labels, _, bad in loader), len(loader)
        found = self._train_features(epoch)
        order = torch.tensor(list(self._sampler(range(len(found)), epoch)), dtype=torch.long)
        chunks = order.split(self.params.batch_size)
        return ((found.features[rows], found.labels[rows], []) for rows in chunks), len(chunks)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        batches, batch_count = self._train_batches(epoch)
        set_train_mode(self.model, self.head_only)
        self.hook.train_mode()
        device = self.placement.device
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        started = last_report = time.monotonic()
        join = (self.net.join() if self.world.distributed else contextlib.nullcontext())
        timer = self.timer
        with join:
            timer.begin(self.state.step)
            for batch_index, (inputs, labels, bad) in enumerate(batches, 1):
                timer.mark("data")
                if bad:
                    self._note_undecodable(bad)
                if inputs.numel() == 0:
                    continue
                inputs, labels = self._to_device(inputs, labels)
                for group in self.optimizer.param_groups:
                    group["lr"] = self._lr_at(self.state.step)
                with self._autocast():
                    logits = self.net(inputs)
                    loss = self.criterion(logits, labels)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.hook.save_gradient_sample()
                timer.mark("backward")
                self.scaler.step(self.optimizer)
                self.scaler.update()
                timer.mark("optimizer")
                timer.end(epoch, self.state.step)
                self.state.step += 1
                loss_sum += loss.detach().double() * labels.numel()
                correct += (logits.detach().argmax(1) == labels).sum()
                seen += labels.numel()
                now = time.monotonic()
                if (self.params.progress_seconds and self.world.is_main
                        and now - last_report >= self.params.progress_seconds):
                    last_report = now
                    self._progress(epoch, batch_index, batch_count, loss_sum.item() / seen,
                                   correct.item() / seen, seen / (now - started))
                timer.begin(self.state.step)
        timer.flush()
        seconds = time.monotonic() - started
        total_loss, total_correct, total_seen, seconds_sum = self._all_sum(
            [loss_sum.item(), float(correct.item()), float(seen), seconds]
        )
        return {
            "train_loss": total_loss / max(1.0, total_seen),
            "train_acc": total_correct / max(1.0, total_seen),
            "images_per_second": total_seen / max(1e-9, seconds_sum / self.world.size),
        }

    def _progress(self, epoch: int, batch: int, batches: int, loss: float, acc: float,
                  rate: float) -> None:
        eta = (batches - batch) * self.params.batch_size / max(rate, 1e-9)
        log.info("progress: epoch %d/%d batch %d/%d (%.0f%%) loss %.4f acc %.4f "
                 "%.1f img/s/process, epoch eta %.0fs", epoch, self.params.epochs, batch,
                 batches, 100 * batch / batches, loss, acc, rate, eta)

    @torch.inference_mode()
    def evaluate(self, split: Split, *, details: bool = False) -> dict[str, Any]:
        """Loss (the training loss function) and accuracy on ``split``, all processes together;
        with ``details``, also every prediction as (path, true, predicted) on the main process."""
        self.model.eval()
        self.hook.eval_mode()
        loss_sum, correct, seen = 0.0, 0, 0
        predictions: list[evaluation.Prediction] = []
        for inputs, labels, indices, bad in self._eval_batches(split):
            if bad:
                self._note_undecodable(bad)
            if inputs.numel() == 0:
                continue
            inputs, labels = self._to_device(inputs, labels)
            with self._autocast():
                logits = self.head(inputs)
                loss = self.criterion(logits.float(), labels)
            predicted = logits.argmax(1)
            loss_sum += loss.item() * labels.numel()
            correct += int((predicted == labels).sum().item())
            seen += labels.numel()
            if details:  # indices are positions in split.samples (Subset passes them through)
                predictions += [(split.samples[i][0], t, p) for i, t, p in
                                zip(indices, labels.tolist(), predicted.tolist(), strict=True)]
        total_loss, total_correct, total_seen = self._all_sum([loss_sum, float(correct), float(seen)])
        if total_seen == 0:
            raise DataError(f"{split.name}: no image could be decoded")
        result: dict[str, Any] = {"loss": total_loss / total_seen, "acc": total_correct / total_seen}
        if details:
            if self.world.distributed:
                gathered: list[Any] = [None] * self.world.size
                dist.all_gather_object(gathered, predictions)
                predictions = [p for part in gathered for p in part]
            result["predictions"] = predictions
        return result

    # -- checkpoints -------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        params = {k: v for k, v in asdict(self.params).items() if k not in RESULT_NEUTRAL}
        return {"hyperparameters": params, "classes": self.classes,
                "train_images": len(self.train_set), "world_size": self.world.size}

    def save_checkpoint(self, epoch: int) -> None:
        if not self.world.is_main:
            return
        checkpoint.save(self.opt.checkpoint_dir, epoch, {
            "fingerprint": self.fingerprint(),
            **self.part.entries(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            **self.state.to_checkpoint(epoch),
        })

    def resume(self) -> int:
        """Load the newest checkpoint; return the first epoch still to run.

        Rank 0 reads it and sends it to the others, so hosts need not hold a copy."""
        state = checkpoint.load_latest(self.opt.checkpoint_dir) if self.world.is_main else None
        if self.world.distributed:
            box = [state]
            dist.broadcast_object_list(box, src=0, device=self.placement.device)
            state = box[0]
        if state is None:
            return 1
        checkpoint.check_fingerprint(state["fingerprint"], self.fingerprint(), self.opt.checkpoint_dir)
        self.part.restore(state, self.opt.checkpoint_dir)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.state = TrainingState.from_checkpoint(state)
        log.info("resumed from the checkpoint of epoch %d (best so far: epoch %d, valid_acc %.4f)",
                 state["epoch"], self.state.best["epoch"], self.state.best["valid_acc"])
        return int(state["epoch"]) + 1

    # -- the run -----------------------------------------------------------
    def run(self) -> dict[str, Any]:
        params = self.params
        if self.world.is_main:
            log.info("device: %s; %d process(es) in all", self.placement.describe(), self.world.size)
            log.info("hyperparameters: %s", " ".join(f"{k}={v}" for k, v in asdict(params).items()))
            if self.features is not None:
                views = (f"{params.feature_views} augmented view(s) of each training image" if params.augment
                         else "one unaugmented view of each image")
                where = self.opt.feature_cache_dir
                log.info("finetune=head: the head trains on the frozen backbone's features, computed "
                         "once (%s); feature cache: %s", views,
                         where or f"this run only ({ENV_FEATURE_CACHE} unset)")
        start_epoch = self.resume()
        if self.monitor:
            self.monitor.start()
        try:
            return self._epochs(start_epoch)
        except TrainingStopped:
            raise TrainingStopped(self.save_on_stop()) from None
        finally:
            if self.monitor:
                self.monitor.stop()

    def save_on_stop(self) -> str:
        """After SIGTERM (SageMaker allows 120 s before SIGKILL): write the best epoch so far as
        the model, without testing it (no collective step: the other processes are stopping too);
        the checkpoints of finished epochs are already on disk. What was kept, in words."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the writes
        best = self.state.best
        if not self.world.is_main:
            return ""
        if self.state.best_state is None:
            return "no epoch had finished: no model written"
        started = time.monotonic()
        self.part.load(self.state.best_state)
        self.write_model({"valid_loss": best["valid_loss"], "valid_acc": best["valid_acc"]},
                         sum(h["epoch_seconds"] for h in self.state.history), stopped=True)
        log.info("stopped: the best model so far (epoch %d, valid_acc %.4f) written to %s in %.1fs",
                 best["epoch"], best["valid_acc"], self.opt.model_dir, time.monotonic() - started)
        return (f"the best model so far (epoch {int(best['epoch'])}, valid_acc {best['valid_acc']:.4f}) "
                f"is in {self.opt.model_dir}")

    def _epochs(self, start_epoch: int) -> dict[str, Any]:
        params = self.params
        started = time.monotonic()
        for epoch in range(start_epoch, params.epochs + 1):
            if self.state.stopped_early:
                break
            epoch_started = time.monotonic()
            train = self.train_epoch(epoch)
            valid = self.evaluate(self.splits["valid"])
            record = {"epoch": epoch, **train, "valid_loss": valid["loss"], "valid_acc": valid["acc"],
                      "lr": self._lr_at(self.state.step), "epoch_seconds": time.monotonic() - epoch_started}
            self.state.history.append(record)
            self.state.update_best(epoch, record, params.patience, self.part.weights())
            if self.world.is_main:
                log.info(metrics.format_epoch(
                    epoch, params.epochs, train_loss=record["train_loss"], train_acc=record["train_acc"],
                    valid_loss=record["valid_loss"], valid_acc=record["valid_acc"], lr=record["lr"],
                    epoch_seconds=record["epoch_seconds"], images_per_second=record["images_per_second"]))
                if not math.isfinite(record["train_loss"]):
                    log.warning("the training loss is not finite: training diverged; lower lr")
            self.save_checkpoint(epoch)
            if self.state.stopped_early and self.world.is_main:
                log.info("early stopping: valid_acc has not improved for %d epochs (best: epoch %d)",
                         params.patience, self.state.best["epoch"])
        return self.finish(time.monotonic() - started)

    def finish(self, seconds: float) -> dict[str, Any]:
        """Restore the best epoch's weights, test them, write the model artefacts, the
        evaluation details and, with the debugger on, the rule verdicts and the report."""
        best = self.state.best
        if self.state.best_state is not None:
            self.part.load(self.state.best_state)
        scores = {"valid_loss": best["valid_loss"], "valid_acc": best["valid_acc"]}
        predictions = {"valid": self.evaluate(self.splits["valid"], details=True)["predictions"]}
        if "test" in self.splits:
            test = self.evaluate(self.splits["test"], details=True)
            scores.update(test_loss=test["loss"], test_acc=test["acc"])
            predictions["test"] = test["predictions"]
        self.hook.close()
        if self.world.distributed:
            dist.barrier()  # every process's tensors are written before the rules read them
        if self.world.is_main:
            int8 = self.quantize(predictions.get("test") or predictions["valid"])
            self.write_model(scores, seconds, int8=int8)
            self._write_evaluation(predictions)
            log.info(metrics.format_final(int(best["epoch"]), scores))
            if self.undecodable:
                log.warning("%d image(s) could not be decoded and were skipped", len(self.undecodable))
            if self.hook_config is not None:  # even if the hook failed on the way
                self._rules_and_report()
        return scores

    def _write_evaluation(self, predictions: dict[str, list[evaluation.Prediction]]) -> None:
        summaries = {split: evaluation.summarize(self.classes, preds) for split, preds in predictions.items()}
        try:
            evaluation.write(self.opt.output_data_dir, summaries)
        except OSError as exc:
            log.warning("evaluation details not written: %s", exc)

    def _rules_and_report(self) -> None:
        """Debugger rules on this job's tensors, then the HTML report; never fails the run."""
        try:
            from .jobdir import JobDir
            from .report import save_step_losses, write_report
            from .rules import evaluate_rules
            from .verdicts import log_verdicts

            results = evaluate_rules(self.opt.root)
            log_verdicts(results)
            save_step_losses(JobDir.find(self.opt.root))
            path = write_report(self.opt.root, rule_results=results)
            log.info("report written to %s", path)
        except Exception as exc:  # noqa: BLE001 - the model is saved; the analysis is a bonus
            log.warning("rules/report skipped after an error: %s: %s", type(exc).__name__, exc)

    def quantize(self, reference: list[evaluation.Prediction]) -> tuple[bytes, dict[str, Any]] | None:
        """The int8 model (``torch.save`` bytes) and its metadata, or None: calibrated on training
        images, scored on the test split (else valid) beside fp32's ``reference`` predictions."""
        train = self.splits["train"]
        count = min(self.params.int8_calibration_images, len(train.samples))
        if not count:
            return None
        started = time.monotonic()
        name = "test" if "test" in self.splits else "valid"
        split = self.splits[name]
        try:
            seeded = torch.Generator().manual_seed(self.params.seed)
            chosen = torch.randperm(len(train.samples), generator=seeded)[:count].tolist()
            images = Subset(self._eval_images(train), chosen)
            batches = (inputs for inputs, *_ in self._loader(images, shuffle_seed=None))
            model = quantize.calibrate(self.model, batches, self.params.image_size)
            positions = {path: i for i, (path, _) in enumerate(split.samples)}
            fp32 = {positions[path]: predicted for path, _, predicted in reference}
            scores = quantize.compare(model, self._loader(self._eval_images(split), shuffle_seed=None), fp32)
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

    def write_model(self, scores: dict[str, float], seconds: float, *, stopped: bool = False,
                    int8: tuple[bytes, dict[str, Any]] | None = None) -> None:
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, buffer)
        splits = {name: {"images": len(s.samples), "skipped": len(s.skipped)}
                  for name, s in self.splits.items()}
        metadata = ModelMetadata(
            architecture=ARCHITECTURE,
            num_classes=len(self.classes),
            preprocessing=Preprocessing.for_size(self.params.image_size),
            pretrained="imagenet" if self.params.pretrained else None,
            int8=int8[1] if int8 else {},
            hyperparameters=asdict(self.params),
            metrics={"selected_epoch": int(self.state.best["epoch"]), **scores},
            history=self.state.history,
            data=splits,
            training={
                "seconds": round(seconds, 1),
                "processes": self.world.size,
                "device": self.placement.describe(),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "stopped_early": self.state.stopped_early,
                "stopped_by_sigterm": stopped,
            },
            versions={"dogbreed": __version__, "torch": torch.__version__,
                      "torchvision": torchvision_version()},
        )
        ModelArtifact(self.opt.model_dir, metadata, list(self.classes)).write(buffer.getvalue(),
                                                                             int8[0] if int8 else None)
        log.info("model written to %s", self.opt.model_dir)


def describe_failure(exc: BaseException) -> str:
    """The one-line reason written first in the failure file."""
    if isinstance(exc, EXPLAINED):
        return str(exc)
    if isinstance(exc, TrainingStopped):
        return ("training stopped by SIGTERM (job stopped, time limit, early-stopped trial or spot "
                "capacity reclaimed); " + (f"{exc.saved}; " if exc.saved else "") +
                "the checkpoints let a restart carry on")
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "GPU out of memory: lower batch_size (or image_size)"
    if isinstance(exc, MemoryError):
        return "out of host memory: lower batch_size or workers"
    return f"internal error: {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    def handler(_signum: int, _frame: object) -> None:
        raise TrainingStopped()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parse(opt: OptML, world: World) -> Hyperparameters:
    ignored: list[str] = []
    params = parse(opt.raw_hyperparameters(), ignored=ignored)
    if ignored and world.is_main:
        log.info("ignoring hyperparameters reserved by SageMaker: %s", ", ".join(ignored))
    return params


def _launch_or_train(opt: OptML) -> None:
    params = _parse(opt, World())
    resources = opt.resource_config()
    nproc = processes_per_host(params.processes_per_host)
    if nproc * len(resources.hosts) == 1:
        Trainer(opt, params, World()).run()
        return
    launch(nproc, resources)


def _user_program(opt: OptML) -> str | None:
    try:
        return user_program(opt)
    except UserError:
        return None  # an unreadable hyperparameters.json: the built-in trainer reports it


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train`` (SageMaker passes no arguments)."""
    if argv is None:
        argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        print(f"\nThe /opt/ml root is {OptML().root} (set OPT_ML to move it).")
        return 0
    opt = OptML()
    world = worker_world()
    setup_logging(world)
    try:
        if world is None and (program := _user_program(opt)):
            hand_over(opt, program)  # the toolkit exits with the script's outcome
        with stop_on_sigterm():
            if world is None:
                opt.clear_failure()
                opt.prepare_outputs()
                _launch_or_train(opt)
            else:
                Trainer(opt, _parse(opt, world), world).run()
    except BaseException as exc:  # every failure is reported, then the code returned
        if isinstance(exc, SystemExit):  # the toolkit's outcome, already reported
            raise
        if isinstance(exc, (KeyboardInterrupt, SignalException)):
            exc = TrainingStopped()
        reason = describe_failure(exc)
        details = exc.details if isinstance(exc, WorkerFailed) else traceback.format_exc()
        if world is None:
            opt.write_failure(reason, details)
        else:  # the launcher reads it and writes the failure file
            record_failure(reason, details)
        if isinstance(exc, EXPLAINED + (TrainingStopped,)):
            log.error("training failed: %s", reason)
        else:
            log.error("training failed: %s\n%s", reason, details)
        return 143 if isinstance(exc, TrainingStopped) else 1
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

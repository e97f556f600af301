"""Where the training loop's batches come from: photos through the loaders, or, with a frozen
backbone (``finetune=head`` and ``feature_views``), the backbone's cached features of the same
photos in the same order.

:class:`BatchSource` owns the datasets, loaders, samplers and both caches (decoded photos and
features) and the list of photos that could not be decoded; the loop sees only batches.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from dogbreed.contract.hyperparameters import Hyperparameters
from dogbreed.contract.opt_ml import OptML
from dogbreed.data.decoded import DecodedCache, DecodedImages, cache_folder, remove_abandoned
from dogbreed.data.features import (
    FeatureCache,
    Features,
    FeatureStore,
    SeededView,
    backbone_of,
    extract,
    merge,
)
from dogbreed.data.loader import ImageFolder, collate
from dogbreed.data.preprocess import decode_side, eval_transform, train_transform
from dogbreed.data.splits import Split
from dogbreed.model.hardware import Placement
from dogbreed.model.weights import expected_sha256
from dogbreed.train.collectives import Collectives

log = logging.getLogger(__name__)
# Training batches: (inputs, labels, undecodable); evaluation's add positions in split.samples.
TrainBatch = tuple[torch.Tensor, torch.Tensor, list[str]]
EvalBatch = tuple[torch.Tensor, torch.Tensor, list[int], list[str]]


def epoch_seed(seed: int, epoch: int) -> int:
    """Every epoch's randomness depends on (seed, epoch) only, so a resumed run repeats it."""
    return (seed * 1_000_003 + epoch) % (2**63)


class BatchSource:
    """The batches of one training process: its share of every split, epoch by epoch."""

    def __init__(self, opt: OptML, params: Hyperparameters, splits: dict[str, Split], placement: Placement,
                 collectives: Collectives, model: nn.Module, on_features: bool,
                 autocast: Callable[[], contextlib.AbstractContextManager]):
        self.params, self.splits, self.placement, self.collectives = params, splits, placement, collectives
        self.world = collectives.world
        self.autocast = autocast
        self.undecodable: set[str] = set()
        self.train_set = ImageFolder(splits["train"].samples,
                                     train_transform(params.image_size, params.augment),
                                     decode_side(params.image_size, train=params.augment))
        self.backbone = backbone_of(model)  # the model's own modules, up to fc's input
        self.features: FeatureStore | None = None
        if on_features:
            amp = placement.amp_dtype
            self.features = FeatureStore(
                FeatureCache(opt.feature_cache_dir), weights_sha256=expected_sha256(),
                precision=str(amp).replace("torch.", "") if amp else "float32", device=placement.device.type,
                seed=params.seed, compute=self._compute_features, all_agree=collectives.all_agree,
                writes=self.world.local_rank == 0)
        self.decoded_cache: DecodedCache | None = None
        self.decoded: dict[tuple[str, int], DecodedImages | None] = {}
        if params.decode_cache:
            # One temporary folder per run and host: a distributed run's workers share their launcher.
            run = os.getppid() if self.world.distributed else os.getpid()
            folder, temporary = cache_folder(opt.feature_cache_dir, run)
            if temporary and self.world.local_rank == 0:
                for gone in remove_abandoned():
                    log.info("decoded images: removed %s, left by a run that was killed", gone)
                atexit.register(shutil.rmtree, folder, True)
            self.decoded_cache = DecodedCache(folder, placement.loader_workers)

    # -- training ----------------------------------------------------------
    def train_batches(self, epoch: int) -> tuple[Iterable[TrainBatch], int]:
        """This process's training batches of ``epoch`` as (inputs, labels, undecodable), and their
        number: photos through the loader, or on features rows of the epoch's view in the same
        order (the same sampler over the same samples)."""
        seed = epoch_seed(self.params.seed, epoch)
        torch.manual_seed(seed)
        if self.features is None:
            self.train_set.decoded = self.decoded_images(self.splits["train"], self.train_set.decode_side)
            sampler = self._sampler(self.train_set, epoch)
            loader = self.loader(self.train_set, shuffle_seed=seed, sampler=sampler)
            return ((images, labels, bad) for images, labels, _, bad in loader), len(loader)
        view = (epoch - 1) % self.params.feature_views if self.params.augment else None
        found = self._split_features(self.splits["train"], view)
        order = torch.tensor(list(self._sampler(range(len(found)), epoch)), dtype=torch.long)
        chunks = order.split(self.params.batch_size)
        return ((found.features[rows], found.labels[rows], []) for rows in chunks), len(chunks)

    def _sampler(self, dataset: Any, epoch: int) -> DistributedSampler:
        sampler = DistributedSampler(dataset, num_replicas=self.world.size, rank=self.world.rank,
                                     shuffle=True, seed=self.params.seed)
        sampler.set_epoch(epoch)
        return sampler

    # -- evaluation --------------------------------------------------------
    def eval_images(self, split: Split) -> ImageFolder:
        size = self.params.image_size
        return ImageFolder(split.samples, eval_transform(size), decode_side(size, train=False))

    def eval_batches(self, split: Split) -> Iterator[EvalBatch]:
        """(inputs, labels, positions in split.samples, undecodable) of this process's share:
        photos, or on features the backbone's features of the same photos."""
        if self.features is None:
            dataset = self.eval_images(split)
            dataset.decoded = self.decoded_images(split, dataset.decode_side)
            yield from self.loader(Subset(dataset, self.collectives.shard(len(dataset))), shuffle_seed=None)
            return
        found = self._split_features(split)
        share = self.collectives.shard(len(found))
        mine = torch.arange(share.start, share.stop, share.step)
        for rows in mine.split(self.params.batch_size):
            yield found.features[rows], found.labels[rows], found.indices[rows].tolist(), []

    # -- shared ------------------------------------------------------------
    def loader(self, dataset: Any, shuffle_seed: int | None, sampler: Any = None) -> DataLoader:
        workers = self.placement.loader_workers
        generator = torch.Generator()
        generator.manual_seed(shuffle_seed if shuffle_seed is not None else self.params.seed)
        return DataLoader(dataset, batch_size=self.params.batch_size, sampler=sampler, shuffle=False,
                          num_workers=workers, collate_fn=collate, pin_memory=self.placement.cuda,
                          generator=generator, prefetch_factor=4 if workers else None)

    def decoded_images(self, split: Split, side: int) -> DecodedImages | None:
        """``split``'s photos decoded at ``side`` once (by one process per host), for the splits read
        every epoch; None: decode them as they are read."""
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
                self.collectives.barrier()
                if found is None:
                    found = self.decoded_cache.get(split.name, paths, digest, side, writes=False)
            self.decoded[memo] = found
        return self.decoded[memo]

    def note_undecodable(self, bad: list[str]) -> None:
        new = [b for b in bad if b not in self.undecodable]
        self.undecodable.update(new)
        for description in new:
            log.warning("skipped an image that could not be decoded: %s", description)

    # -- features (finetune=head) ------------------------------------------
    def _split_features(self, split: Split, view: int | None = None) -> Features:
        """The backbone's features of ``split``: the evaluation transform's, or with ``view`` that
        augmented view of the training set's."""
        assert self.features is not None
        if view is None:
            images = self.eval_images(split)
        else:
            images = ImageFolder(split.samples, train_transform(self.params.image_size, True),
                                 decode_side(self.params.image_size, train=True))
        found = self.features.get(split, images, view)
        self.note_undecodable(found.undecodable)
        return found

    def _compute_features(self, dataset: Dataset) -> Features:
        """Every process computes its share of ``dataset``'s features; all get the whole."""
        if isinstance(dataset, SeededView):  # the training set's views: decode its photos once for all
            images = dataset.images
            images.decoded = self.decoded_images(self.splits["train"], images.decode_side)
        shard = Subset(dataset, self.collectives.shard(len(dataset)))
        placement = self.placement
        found = extract(self.backbone, self.loader(shard, shuffle_seed=None),
                        lambda images: images.to(placement.device, non_blocking=True,
                                                 memory_format=placement.memory_format),
                        self.autocast)
        parts = self.collectives.gather(found)
        return found if len(parts) == 1 else merge(parts)

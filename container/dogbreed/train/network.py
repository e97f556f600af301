"""The network being trained, and the handles the loop needs of it, built in one place.

``model`` is the whole ResNet18 (what the artefact holds); ``head`` is what training and
evaluation run: the model, or on the frozen backbone's cached features its final layer alone;
``net`` is ``head`` wrapped for several processes (DistributedDataParallel), else ``head`` itself;
``part`` is what checkpoints carry of it (the whole model, or ``fc`` alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dogbreed.model.hardware import Placement
from dogbreed.model.network import build, freeze_backbone, set_train_mode
from dogbreed.train.checkpoint import ModelPart
from dogbreed.train.distributed import World


@dataclass
class TrainedNetwork:
    model: nn.Module
    head: nn.Module
    net: nn.Module
    part: ModelPart
    trainable: list[nn.Parameter]
    head_only: bool

    @classmethod
    def build(cls, classes: int, *, pretrained: bool, seed: int, head_only: bool, on_features: bool,
              placement: Placement, world: World) -> TrainedNetwork:
        """ResNet18 for ``classes`` classes, seeded, its backbone frozen with ``head_only``, on the
        placement's device; ``on_features``: the loop runs the final layer alone."""
        torch.manual_seed(seed)
        model = build(classes, pretrained=pretrained)
        trainable = freeze_backbone(model) if head_only else list(model.parameters())
        part = ModelPart(model, head_only)
        model.to(placement.device, memory_format=placement.memory_format)
        head: nn.Module = model.fc if on_features else model
        net = head
        if world.distributed:
            devices = [placement.device.index] if placement.cuda else None
            net = DistributedDataParallel(head, device_ids=devices)
        return cls(model, head, net, part, trainable, head_only)

    def train_mode(self) -> None:
        """Training mode; with a frozen backbone its BatchNorm statistics stay frozen too."""
        set_train_mode(self.model, self.head_only)

    def eval_mode(self) -> None:
        self.model.eval()

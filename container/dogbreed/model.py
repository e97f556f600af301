"""The network: torchvision ResNet18 with its last layer replaced for our classes."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18

from .weights import load_imagenet_state

ARCHITECTURE = "resnet18"


def build(num_classes: int, *, pretrained: bool) -> nn.Module:
    """ResNet18 (ImageNet weights when ``pretrained``) with a new ``fc`` to ``num_classes``."""
    model = resnet18(weights=None)
    if pretrained:
        model.load_state_dict(load_imagenet_state(), strict=True)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def freeze_backbone(model: nn.Module) -> list[nn.Parameter]:
    """Freeze everything but ``fc``; return the parameters left to train."""
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("fc.")
    return [p for p in model.parameters() if p.requires_grad]


def set_train_mode(model: nn.Module, head_only: bool) -> None:
    """Training mode; with a frozen backbone its BatchNorm statistics stay frozen too."""
    model.train()
    if head_only:
        for name, module in model.named_modules():
            if not name.startswith("fc"):
                module.eval()

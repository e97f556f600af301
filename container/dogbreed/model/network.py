"""The network: ResNet18 (:mod:`dogbreed.model.resnet`, torchvision's layout and initialisation
without importing torchvision) with its last layer replaced for our classes."""

from __future__ import annotations

from torch import nn

from dogbreed.model.resnet import ResNet18, init_like_torchvision
from dogbreed.model.weights import load_imagenet_state

ARCHITECTURE = "resnet18"
IMAGENET_CLASSES = 1000


def build(num_classes: int, *, pretrained: bool) -> nn.Module:
    """ResNet18 (ImageNet weights when ``pretrained``) with a new ``fc`` to ``num_classes``.

    The same steps as ``torchvision.models.resnet18(weights=None)`` then a new ``fc``, so a seed
    gives the same weights as torchvision would (the ImageNet ``fc`` is built, then replaced)."""
    model = ResNet18(IMAGENET_CLASSES)
    init_like_torchvision(model)
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

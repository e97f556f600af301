"""The int8 model for CPU serving: ResNet18 quantised by PyTorch's FX graph mode, x86 backend.

``train`` calibrates it at the end on training photos (static quantisation: activation ranges
from real inputs, per-channel int8 weights, convolutions fused with their batch norms and ReLUs)
and saves its state dict beside the fp32 weights; ``serve`` rebuilds the same graph from the
architecture alone and loads that state (``weights_only=True``), with DOGBREED_PRECISION=int8.
The x86 backend runs on any x86-64 CPU and uses VNNI/AMX where the CPU has them.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from dogbreed.model.resnet import ResNet18

ENGINE = "x86"


def _prepared(model: nn.Module, image_size: int) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = ENGINE
    example = (torch.zeros(1, 3, image_size, image_size),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        return prepare_fx(model.eval(), get_default_qconfig_mapping(ENGINE), example_inputs=example)


def _converted(prepared: nn.Module) -> nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        return convert_fx(prepared)


@torch.inference_mode()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor], image_size: int) -> nn.Module:
    """The int8 model of ``model`` (left untouched), its activation ranges observed on
    ``batches`` of normalised images (any device; the observers run on the CPU)."""
    prepared = _prepared(copy.deepcopy(model).float().cpu(), image_size)
    seen = 0
    for batch in batches:
        prepared(batch.float().cpu())
        seen += len(batch)
    if not seen:
        raise ValueError("no image to calibrate the int8 model on")
    return _converted(prepared)


def load(num_classes: int, image_size: int, state: dict[str, torch.Tensor]) -> nn.Module:
    """The int8 model whose state dict :func:`calibrate`'s model gave (raises on a mismatch)."""
    model = _converted(_prepared(ResNet18(num_classes), image_size))
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.inference_mode()
def compare(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor, list[int], list[str]]],
            fp32: dict[int, int]) -> dict[str, float]:
    """Top-1 accuracy of ``model`` on ``batches`` (inputs, labels, positions, undecodable), of
    the fp32 model's predictions ``fp32`` (by position) on the same images, and how often the
    two agree."""
    seen = correct = fp32_correct = agree = 0
    for inputs, labels, positions, _ in batches:
        if not len(inputs):
            continue
        predicted = model(inputs.float().cpu()).argmax(1).tolist()
        for label, position, guess in zip(labels.tolist(), positions, predicted, strict=True):
            seen += 1
            correct += guess == label
            fp32_correct += fp32[position] == label
            agree += fp32[position] == guess
    if not seen:
        raise ValueError("no image to score the int8 model on")
    return {"images": seen, "acc": correct / seen, "fp32_acc": fp32_correct / seen, "agreement": agree / seen}

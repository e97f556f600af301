"""The training network: torchvision's ResNet18 and its initialisation, without torchvision."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn
from torchvision import transforms as T
from torchvision.models import resnet18

from dogbreed.data.preprocess import AugmentTransform, torchvision_version
from dogbreed.model.network import build
from local_test.testdata import draw_image


@pytest.mark.parametrize("seed", [0, 1234])
def test_a_seed_gives_torchvisions_weights_and_leaves_the_generator_where_torchvision_does(seed):
    torch.manual_seed(seed)
    reference = resnet18(weights=None)
    reference.fc = nn.Linear(reference.fc.in_features, 5)
    after_reference = torch.rand(4)
    torch.manual_seed(seed)
    ours = build(5, pretrained=False)
    assert torch.equal(torch.rand(4), after_reference)
    a, b = reference.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pretrained_weights_are_loaded_strictly(monkeypatch, standin):
    path, sha = standin
    monkeypatch.setenv("DOGBREED_WEIGHTS", str(path))
    monkeypatch.setenv("DOGBREED_WEIGHTS_SHA256", sha)
    model = build(3, pretrained=True)
    start = torch.load(path, weights_only=True)
    state = model.state_dict()
    assert all(torch.equal(state[k], start[k]) for k in start if not k.startswith("fc."))
    assert state["fc.weight"].shape == (3, 512)


def test_training_imports_neither_torchvision_nor_dynamo():
    code = ("import sys, dogbreed.train.trainer\n"
            "from dogbreed.model.network import build\nbuild(3, pretrained=False)\n"
            "from dogbreed.data.preprocess import torchvision_version, train_transform\n"
            "train_transform(32, True); v = torchvision_version()\n"
            "print([m for m in ('torchvision', 'torch._dynamo') if m in sys.modules], v)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import torchvision

    assert out.stdout.split() == ["[]", torchvision.__version__]
    assert torchvision_version() == torchvision.__version__


def test_the_augmentation_is_torchvisions_draw_for_draw():
    import random

    img = draw_image(1, 64, random.Random(0))
    reference = T.Compose([T.RandomResizedCrop(32, scale=(0.25, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ours = AugmentTransform(32)
    for seed in range(5):
        torch.manual_seed(seed)
        expected = reference(img)
        torch.manual_seed(seed)
        assert torch.equal(ours(img), expected)
    assert "size=32" in repr(ours) and "scale=(0.25, 1.0)" in repr(ours)

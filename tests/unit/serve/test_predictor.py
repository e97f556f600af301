import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.models import resnet18

from dogbreed.contract.artifact import IMAGENET_MEAN, IMAGENET_STD, ArtifactError, display_name, resize_size
from dogbreed.data.images import ImageError
from dogbreed.data.preprocess import EvalTransform
from dogbreed.model.resnet import ResNet18
from dogbreed.serve.app import ModelState, create_app
from dogbreed.serve.predictor import Predictor


def test_compact_resnet18_equals_torchvision():
    torch.manual_seed(0)
    reference = resnet18(num_classes=7).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    ours = ResNet18(7).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))


def test_eval_transform_equals_torchvision():
    rng = np.random.default_rng(0)
    for _ in range(60):
        w, h = (int(v) for v in rng.integers(1, 700, 2))
        if max(w, h) > 20 * min(w, h):
            continue
        size = int(rng.choice([32, 48, 64, 224]))
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        reference = T.Compose([T.Resize(resize_size(size)), T.CenterCrop(size), T.ToTensor(),
                               T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(img)
        assert torch.equal(EvalTransform(size)(img), reference), (w, h, size)


def test_extreme_aspect_ratio_is_refused_not_resized_to_gigapixels():
    with pytest.raises(ImageError, match="aspect ratio"):
        EvalTransform(224)(Image.new("RGB", (10000, 1)))


def test_serving_never_imports_torchvision():
    code = ("import sys, dogbreed.serve.server, dogbreed.serve.app, dogbreed.serve.predictor, "
            "dogbreed.data.preprocess; "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_predictor_on_a_trained_model(trained_model):
    predictor = Predictor(trained_model)
    assert predictor.classes == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
    assert predictor.breeds == ["Affenpinscher", "Afghan hound", "Airedale terrier"]
    x = predictor.transform.pixels(Image.new("RGB", (80, 60), (200, 60, 60)))
    (top,) = predictor.predict([x], top_k=2)
    assert len(top) == 2 and top[0]["probability"] >= top[1]["probability"]


@pytest.mark.parametrize("damage,fragment", [
    (lambda d: (d / "metadata.json").unlink(), "metadata.json is missing"),
    (lambda d: (d / "classes.json").write_text('["a"]'), "does not list 3 class names"),
    (lambda d: (d / "model.pt").write_bytes(b"junk"), "cannot be loaded into the fp32 ResNet18"),
    (lambda d: torch.save({"fc.weight": torch.zeros(3, 512)}, d / "model.pt"), "cannot be loaded"),
    (lambda d: (d / "metadata.json").write_text(json.dumps({"architecture": "vgg"})), "unsupported"),
])
def test_damaged_model_folders_are_explained(trained_model, tmp_path, damage, fragment):
    folder = tmp_path / "model"
    shutil.copytree(trained_model, folder)
    damage(folder)
    with pytest.raises(ArtifactError, match=fragment):
        Predictor(folder)


def test_ping_before_and_after_load(trained_model):
    state = ModelState(trained_model)
    client = create_app(state).test_client()
    before = client.get("/ping")
    assert before.status_code == 503 and before.json["error"] == "model not loaded yet"
    assert client.post("/invocations", data=b"x", content_type="image/jpeg").status_code == 503
    state.load()
    assert client.get("/ping").status_code == 200


def test_display_name():
    assert display_name("001.Affenpinscher") == "Affenpinscher"
    assert display_name("077.Irish_water_spaniel") == "Irish water spaniel"
    assert display_name("poodle") == "poodle"

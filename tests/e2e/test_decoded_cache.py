"""The real `train` reading its photos decoded once (decode_cache): the same model as decoding
them every epoch, found again by the next run, and no temporary folder left behind."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from local_test.testdata import write_opt_ml
from tests.helpers import FAST_HP, read_metadata, run_train

pytestmark = pytest.mark.e2e


def train(tmp_path: Path, name: str, data: Path, hp: dict[str, str], env: dict[str, str],
          cache: Path | None = None) -> tuple[Path, str]:
    root = tmp_path / name
    shutil.rmtree(root, ignore_errors=True)
    write_opt_ml(root, data, hp)
    result = run_train(root, {**env, "DOGBREED_FEATURE_CACHE": str(cache)} if cache else env)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, result.stdout + result.stderr


def outcome(root: Path) -> tuple[dict[str, torch.Tensor], dict, list[dict]]:
    meta = read_metadata(root)
    history = [{k: v for k, v in h.items() if k not in ("epoch_seconds", "images_per_second")}
               for h in meta["history"]]
    return torch.load(root / "model" / "model.pt", weights_only=True), meta["metrics"], history


def same(a: tuple, b: tuple) -> bool:
    (wa, ma, ha), (wb, mb, hb) = a, b
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa) and (ma, ha) == (mb, hb)


def test_training_on_decoded_photos_is_training_on_the_photos(tmp_path, dataset, train_env):
    hp = {**FAST_HP, "epochs": "2", "workers": "1"}
    plain, out = train(tmp_path, "plain", dataset, {**hp, "decode_cache": "false"}, train_env)
    assert "decoded images" not in out

    cache = tmp_path / "cache"
    first, out = train(tmp_path, "first", dataset, hp, train_env, cache)
    assert re.findall(r"decoded images: (\w+): (\d+) images decoded once", out) == [("train", "24"),
                                                                                   ("valid", "12")]
    assert sorted(p.suffix for p in (cache / "decoded").iterdir()) == [".json", ".json", ".pixels", ".pixels"]
    second, out = train(tmp_path, "second", dataset, hp, train_env, cache)
    assert re.findall(r"decoded images: (\w+): cache hit", out) == ["train", "valid"]
    assert "decoded once" not in out
    # Bit for bit the model and metrics of decoding every epoch, from a new cache or an old one.
    assert same(outcome(plain), outcome(first)) and same(outcome(plain), outcome(second))


def test_without_a_cache_folder_the_run_uses_a_temporary_one_and_removes_it(tmp_path, dataset, train_env):
    ended = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    abandoned = Path(tempfile.gettempdir()) / f"dogbreed-decoded-{int(ended.stdout)}"  # a killed run's
    abandoned.mkdir()
    _, out = train(tmp_path, "temporary", dataset, {**FAST_HP, "epochs": "1"}, train_env)
    # Removed by this run (which logs it) or by another test's `train` running beside it.
    assert not abandoned.exists()
    made = re.findall(r"decoded once in [\d.]+ s \([\d.]+ MB in (\S+)\)", out)
    folders = {Path(p).parent for p in made}
    assert len(made) == 2 and len(folders) == 1  # train and valid, in one folder of this run's
    folder = folders.pop()
    assert folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("dogbreed-decoded-")
    assert not folder.exists()  # other runs (tests in parallel) may have folders of their own

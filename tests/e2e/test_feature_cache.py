"""finetune=head on the frozen backbone's cached features: the real `train`, stand-in weights."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
import torch

from dogbreed.contract import metrics
from dogbreed.serve.predictor import Predictor
from local_test.testdata import make_standin_weights, write_opt_ml
from tests.helpers import FAST_HP, read_metadata, run_train, train_until

pytestmark = pytest.mark.e2e
HEAD = {**FAST_HP, "pretrained": "true", "finetune": "head", "epochs": "3", "lr": "0.01"}


def train(tmp_path: Path, name: str, data: Path, hp: dict[str, str], env: dict[str, str],
          cache: Path | None = None) -> tuple[Path, str]:
    """A fresh /opt/ml, the real `train` on it (with the feature cache ``cache``); (root, output)."""
    root = tmp_path / name
    shutil.rmtree(root, ignore_errors=True)
    write_opt_ml(root, data, hp)
    env = {**env, "DOGBREED_FEATURE_CACHE": str(cache)} if cache else env
    result = run_train(root, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, result.stdout


def lookups(output: str) -> list[tuple[str, str]]:
    """(entry, hit or miss) of every cache look-up in a run's log, in order."""
    return re.findall(r"features: (\w+(?: view \d+)?): cache (hit|miss)", output)


def model(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / "model" / "model.pt", weights_only=True)


def results(root: Path) -> tuple[dict, list[dict]]:
    """The metadata's metrics and history, timings left out."""
    meta = read_metadata(root)
    history = [{k: v for k, v in h.items() if k not in ("epoch_seconds", "images_per_second")}
               for h in meta["history"]]
    return meta["metrics"], history


def test_cached_features_train_the_head_as_the_backbone_at_every_step_does(tmp_path, dataset, train_env,
                                                                         standin):
    """Without augmentation the features are the same numbers whether cached or not: the runs agree."""
    hp = {**HEAD, "augment": "false"}
    cache = tmp_path / "cache"
    every_step, out = train(tmp_path, "every-step", dataset, {**hp, "feature_views": "0"}, train_env)
    assert "features:" not in out  # feature_views=0: the backbone runs at every step, as before
    first, out = train(tmp_path, "first", dataset, hp, train_env, cache)
    assert lookups(out) == [("train", "miss"), ("valid", "miss"), ("test", "miss")]
    assert "feature cache: " + str(cache) in out
    second, out = train(tmp_path, "second", dataset, hp, train_env, cache)
    assert lookups(out) == [("train", "hit"), ("valid", "hit"), ("test", "hit")]
    assert sorted(p.name.split("-")[0] for p in cache.glob("*.pt")) == ["test", "train", "valid"]
    # The header checks of the three splits are cached too: the second run opened no image for them.
    assert len(list((cache / "scans").glob("scan-*.json"))) == 3
    assert out.count("header checks of") == 3 and "cache hit (" + str(cache / "scans") in out

    # From the cache or not, the same model and metrics, bit for bit.
    assert model(first).keys() == model(second).keys()
    assert all(torch.equal(model(first)[k], model(second)[k]) for k in model(first))
    assert results(first) == results(second)
    # Against the backbone run at every step: the same within float rounding.
    reference, cached = model(every_step), model(first)
    assert all(torch.allclose(reference[k], cached[k], atol=1e-5) for k in reference)
    (ref_metrics, ref_history), (got_metrics, got_history) = results(every_step), results(first)
    assert got_metrics.keys() == ref_metrics.keys()
    for name, value in ref_metrics.items():
        assert got_metrics[name] == pytest.approx(value, abs=1e-5), name
    for ref, got in zip(ref_history, got_history, strict=True):
        assert ref.keys() == got.keys() and all(got[k] == pytest.approx(v, abs=1e-5) for k, v in ref.items())
    # The metric lines the tuner reads are all there, and the backbone is still the stand-in's.
    assert [e for e, _ in filter(None, map(metrics.parse_epoch, out.splitlines()))] == [1, 2, 3]
    assert sum(map(metrics.is_final, out.splitlines())) == 1
    start = torch.load(standin[0], weights_only=True)
    assert all(torch.equal(cached[k], start[k]) for k in start if not k.startswith("fc."))
    # The artefact is the whole ResNet18, as serve loads it.
    predictor = Predictor(first / "model")
    photo = sorted((dataset / "test").rglob("*.jpg"))[0].read_bytes()
    (top,) = predictor.predict([predictor.preprocess(photo)], top_k=3)
    assert sorted(p["class"] for p in top) == predictor.classes


@pytest.mark.slow
def test_augmented_views_are_computed_once_each_and_shared(tmp_path, dataset, train_env):
    hp = {**HEAD, "feature_views": "2"}
    cache = tmp_path / "cache"
    first, out = train(tmp_path, "first", dataset, hp, train_env, cache)
    # Epoch 3 uses view 0 again: two views computed in three epochs.
    assert lookups(out) == [("train view 0", "miss"), ("valid", "miss"), ("train view 1", "miss"),
                            ("test", "miss")]
    assert "2 augmented view(s) of each training image" in out
    second, out = train(tmp_path, "second", dataset, hp, train_env, cache)
    assert lookups(out) == [("train view 0", "hit"), ("valid", "hit"), ("train view 1", "hit"),
                            ("test", "hit")]
    assert all(torch.equal(model(first)[k], model(second)[k]) for k in model(first))
    assert results(first) == results(second)
    # No temporary file is left; every entry holds its own key (weights_only loading).
    assert sorted(p.name.split("-")[1] for p in cache.glob("*.pt")) == ["eval", "eval", "view0", "view1"]
    assert not list(cache.glob(".*")) and not list((cache / "scans").glob(".*"))
    entry = torch.load(next(cache.glob("train-view1-*.pt")), weights_only=True)
    assert entry["key"]["view"] == 1 and entry["key"]["seed"] == 0 and entry["features"].shape == (24, 512)
    # More views than before: the first two are shared, the third is new; a new seed draws new views.
    _, out = train(tmp_path, "more", dataset, {**hp, "feature_views": "3"}, train_env, cache)
    assert [e for e, hit in lookups(out) if hit == "miss"] == ["train view 2"]
    _, out = train(tmp_path, "seed", dataset, {**hp, "seed": "1"}, train_env, cache)
    assert [e for e, hit in lookups(out) if hit == "miss"] == ["train view 0", "train view 1"]


@pytest.mark.slow
def test_another_image_size_or_other_weights_miss_the_cache(tmp_path, dataset, train_env):
    cache = tmp_path / "cache"
    train(tmp_path, "first", dataset, HEAD, train_env, cache)
    _, out = train(tmp_path, "size", dataset, {**HEAD, "image_size": "40"}, train_env, cache)
    assert {hit for _, hit in lookups(out)} == {"miss"}
    weights = tmp_path / "other-weights.pth"
    sha = make_standin_weights(weights, seed=1)
    env = {**train_env, "DOGBREED_WEIGHTS": str(weights), "DOGBREED_WEIGHTS_SHA256": sha}
    _, out = train(tmp_path, "weights", dataset, HEAD, env, cache)
    assert {hit for _, hit in lookups(out)} == {"miss"}
    _, out = train(tmp_path, "again", dataset, HEAD, train_env, cache)  # the first entries are still there
    assert {hit for _, hit in lookups(out)} == {"hit"}
    # Another learning rate, batch size or number of epochs trains on the same features.
    _, out = train(tmp_path, "lr", dataset, {**HEAD, "lr": "0.003", "batch_size": "8", "epochs": "2"},
                   train_env, cache)
    assert {hit for _, hit in lookups(out)} == {"hit"}


def test_a_damaged_entry_is_computed_again(tmp_path, dataset, train_env):
    cache = tmp_path / "cache"
    first, _ = train(tmp_path, "first", dataset, {**HEAD, "epochs": "1"}, train_env, cache)
    (valid,) = cache.glob("valid-*.pt")
    valid.write_bytes(b"not a tensor file")
    second, out = train(tmp_path, "second", dataset, {**HEAD, "epochs": "1"}, train_env, cache)
    assert "which does not load" in out
    assert lookups(out) == [("train view 0", "hit"), ("valid", "miss"), ("test", "hit")]
    assert results(first) == results(second)
    assert torch.load(valid, weights_only=True)["features"].shape == (12, 512)


@pytest.mark.slow
def test_two_processes_share_the_work_and_the_entries(tmp_path, dataset, train_env):
    cache = tmp_path / "cache"
    one, _ = train(tmp_path, "one", dataset, HEAD, train_env, cache)
    two, out = train(tmp_path, "two", dataset, {**HEAD, "processes_per_host": "2"}, train_env, cache)
    # The entries of one process serve two (the features do not depend on who computed them).
    assert {hit for _, hit in lookups(out)} == {"hit"}
    assert "2 process(es) in all" in out
    fresh, out = train(tmp_path, "fresh", dataset, {**HEAD, "processes_per_host": "2"}, train_env,
                       tmp_path / "cache2")
    assert {hit for _, hit in lookups(out)} == {"miss"}
    for name in ("train-view0", "valid-eval", "test-eval"):
        a = torch.load(next(cache.glob(f"{name}-*.pt")), weights_only=True)
        b = torch.load(next((tmp_path / "cache2").glob(f"{name}-*.pt")), weights_only=True)
        assert torch.allclose(a["features"], b["features"], atol=1e-5)
        assert torch.equal(a["indices"], b["indices"])
    details = json.loads((fresh / "output" / "data" / "evaluation.json").read_text())
    assert details["valid"]["images"] == 12 and details["test"]["images"] == 12


def test_head_only_checkpoints_hold_the_head_and_resume_to_the_same_result(tmp_path, dataset, train_env):
    """A checkpoint holds fc (kilobytes, not the 45 MB ResNet18); killed and resumed, the run ends
    with the same model as an uninterrupted one."""
    hp = {**HEAD, "epochs": "4"}
    cache = tmp_path / "cache"
    reference, _ = train(tmp_path, "reference", dataset, hp, train_env, cache)
    (saved,) = (reference / "checkpoints").glob("epoch-*.pt")
    assert saved.stat().st_size < 100_000
    killed = tmp_path / "killed"
    write_opt_ml(killed, dataset, hp)
    proc, _ = train_until(killed, {**train_env, "DOGBREED_FEATURE_CACHE": str(cache)}, "epoch=2/4")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    assert not (killed / "model" / "model.pt").exists()
    resumed = run_train(killed, {**train_env, "DOGBREED_FEATURE_CACHE": str(cache)})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from the checkpoint of epoch" in resumed.stdout
    a, b = model(reference), model(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert results(reference) == results(killed)

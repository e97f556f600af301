import io

import pytest
import torch

from dogbreed.errors import UserError
from dogbreed.model.network import build, freeze_backbone
from dogbreed.train import checkpoint
from dogbreed.train.checkpoint import CheckpointMismatch, ModelPart, TrainingState


def test_state_survives_a_checkpoint_file(tmp_path):
    weights = {"w": torch.tensor([1.0, 2.0])}
    state = TrainingState()
    for epoch, acc in [(1, 0.5), (2, 0.8), (3, 0.7)]:
        weights["w"] += 1
        state.step += 10
        state.history.append({"epoch": epoch, "valid_acc": acc, "valid_loss": 1 - acc})
        state.update_best(epoch, state.history[-1], patience=2, weights=weights)
    assert state.best["epoch"] == 2 and state.stale_epochs == 1 and not state.stopped_early
    assert torch.equal(state.best_state["w"], torch.tensor([3.0, 4.0]))  # a copy: later steps leave it
    checkpoint.save(tmp_path, 3, {"model": weights, **state.to_checkpoint(3)})
    restored = TrainingState.from_checkpoint(checkpoint.load_latest(tmp_path))
    assert restored.step == 30 and restored.history == state.history and restored.best == state.best
    assert torch.equal(restored.best_state["w"], state.best_state["w"])
    restored.update_best(4, {"valid_acc": 0.6, "valid_loss": 0.4}, patience=2, weights=weights)
    assert restored.stopped_early and restored.stale_epochs == 2


def test_a_best_epoch_that_is_the_last_one_is_the_model_itself(tmp_path):
    weights = {"w": torch.zeros(2)}
    state = TrainingState()
    state.update_best(1, {"valid_acc": 0.5, "valid_loss": 0.5}, patience=0, weights=weights)
    assert state.to_checkpoint(1)["best_model"] is None  # not stored twice
    checkpoint.save(tmp_path, 1, {"model": weights, **state.to_checkpoint(1)})
    assert torch.equal(TrainingState.from_checkpoint(checkpoint.load_latest(tmp_path)).best_state["w"],
                       weights["w"])


def test_other_settings_are_refused_naming_the_differences(tmp_path):
    saved = {"hyperparameters": {"lr": 0.001, "epochs": 2}, "classes": ["a", "b"], "train_images": 8,
             "world_size": 1}
    checkpoint.check_fingerprint(saved, dict(saved), tmp_path)
    current = {**saved, "hyperparameters": {"lr": 0.01, "epochs": 2}, "world_size": 2}
    with pytest.raises(CheckpointMismatch) as caught:
        checkpoint.check_fingerprint(saved, current, tmp_path)
    assert isinstance(caught.value, UserError)
    assert str(caught.value) == (f"the checkpoints in {tmp_path} come from a run with other settings "
                                 "(lr: 0.001 -> 0.01; world_size: 1 -> 2); remove them to start afresh")


def _head_model(seed: int = 0):
    torch.manual_seed(seed)
    model = build(3, pretrained=False)
    optimizer = torch.optim.AdamW(freeze_backbone(model), lr=0.01)
    model.fc(torch.randn(2, 512)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_a_head_only_checkpoint_holds_fc_and_resumes_on_the_same_backbone(tmp_path):
    model, optimizer = _head_model()
    part = ModelPart(model, head_only=True)
    path = checkpoint.save(tmp_path, 1, {**part.entries(), "optimizer": optimizer.state_dict()})
    whole = checkpoint.save(tmp_path / "whole", 1, {**ModelPart(model, False).entries()})
    assert path.stat().st_size < 50_000 < 40_000_000 < whole.stat().st_size
    state = checkpoint.load_latest(tmp_path)
    assert set(state["model"]) == {"weight", "bias"}

    torch.manual_seed(0)
    rebuilt = build(3, pretrained=False)  # the same seed: the same backbone, fc before the step
    assert not torch.equal(rebuilt.fc.weight, model.fc.weight)
    ModelPart(rebuilt, head_only=True).restore(state, tmp_path)
    got, expected = rebuilt.state_dict(), model.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)

    other, _ = _head_model(seed=1)  # another backbone: refused
    with pytest.raises(CheckpointMismatch, match="another frozen backbone"):
        ModelPart(other, head_only=True).restore(state, tmp_path)


def test_a_format_1_head_only_checkpoint_still_resumes(tmp_path):
    model, _ = _head_model()
    best = {k: v + 1 for k, v in model.state_dict().items()}
    fingerprint = {"hyperparameters": {"finetune": "head"}}
    buffer = io.BytesIO()  # what the previous version wrote: the whole model
    torch.save({"format_version": 1, "epoch": 2, "fingerprint": fingerprint, "model": model.state_dict(),
                "best_model": best}, buffer)
    checkpoint.path_for(tmp_path, 2).write_bytes(buffer.getvalue())
    state = checkpoint.load_latest(tmp_path)
    assert state["format_version"] == checkpoint.FORMAT_VERSION
    assert set(state["model"]) == set(state["best_model"]) == {"weight", "bias"}
    assert torch.equal(state["best_model"]["weight"], best["fc.weight"])
    rebuilt, _ = _head_model()
    ModelPart(rebuilt, head_only=True).restore(state, tmp_path)
    assert torch.equal(rebuilt.fc.weight, model.fc.weight)


def test_the_backbone_digest_ignores_device_layout():
    model, _ = _head_model()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    channels_last = {k: v.to(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in state.items()}
    assert checkpoint.tensors_sha256(state) == checkpoint.tensors_sha256(channels_last)
    state["bn1.running_mean"] = state["bn1.running_mean"] + 1e-7
    assert checkpoint.tensors_sha256(state) != checkpoint.tensors_sha256(channels_last)

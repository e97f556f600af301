import pytest
import torch

from dogbreed import checkpoint
from dogbreed.checkpoint import CheckpointMismatch, TrainingState
from dogbreed.errors import UserError


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

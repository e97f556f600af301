"""The schedule resumes at the same point whether the checkpoint holds its state or, written before
it did, only the step count."""

import pytest
import torch

from dogbreed.contract.hyperparameters import parse
from dogbreed.train.optimisation import Optimisation, schedule


def optimisation(steps: int = 10) -> Optimisation:
    weights = torch.nn.Linear(3, 2)
    return Optimisation(weights.parameters(), parse({"lr": "0.01"}), None, total_steps=steps)


def run(opt: Optimisation, steps: int) -> None:
    for _ in range(steps):
        opt.backward(opt.loss(torch.zeros(4, 2, requires_grad=True) + 1, torch.zeros(4, dtype=torch.long)))
        opt.step()


def test_the_cosine_schedule_goes_from_lr_to_zero():
    factor = schedule("cosine", 10)
    assert factor(0) == 1.0 and factor(5) == pytest.approx(0.5) and factor(10) == pytest.approx(0.0)
    assert schedule("constant", 10)(7) == 1.0


@pytest.mark.parametrize("with_schedule", [True, False])
def test_a_resumed_schedule_carries_on_at_the_same_lr(with_schedule):
    first = optimisation()
    run(first, 4)
    state = first.state_dict()
    if not with_schedule:  # a checkpoint of the format before the schedule's state was kept
        del state["scheduler"]
    resumed = optimisation()
    resumed.load_state_dict(state, step=4)
    assert resumed.lr == pytest.approx(first.lr) == pytest.approx(0.01 * schedule("cosine", 10)(4))
    run(first, 1)
    run(resumed, 1)
    assert resumed.lr == pytest.approx(first.lr)

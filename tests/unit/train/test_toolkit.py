"""Which script a job hands over to the training toolkit: only one inside its source directory."""

from __future__ import annotations

import json

import pytest

from dogbreed.contract.opt_ml import OptML
from dogbreed.errors import UserError
from dogbreed.train.toolkit import user_program


def _opt(tmp_path, **hyperparameters) -> OptML:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return OptML(tmp_path)


@pytest.mark.parametrize("given,program", [('"train.py"', "train.py"), ("train.py", "train.py"),
                                           ('"src/train.py"', "src/train.py"), ('""', None)])
def test_the_sdks_entry_point_is_the_program(tmp_path, given, program):
    assert user_program(_opt(tmp_path, sagemaker_program=given)) == program


def test_no_program_means_the_built_in_trainer_and_the_variable_is_the_fallback(tmp_path):
    assert user_program(_opt(tmp_path, epochs="2")) is None
    assert user_program(_opt(tmp_path / "b", epochs="2"), "script.py") == "script.py"


@pytest.mark.parametrize("given", ['"/opt/ml/input/data/train/evil.py"', '"../input/data/train/evil.py"',
                                   '"code/../../evil.py"'])
def test_a_script_outside_the_source_directory_is_refused(tmp_path, given):
    with pytest.raises(UserError, match="must be a path inside the job's source directory"):
        user_program(_opt(tmp_path, sagemaker_program=given))

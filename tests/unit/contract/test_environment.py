"""The environment, read once per program: typed fields, SageMaker's defaults, one policy for a bad
value (a SettingError naming the variable and what it accepts)."""

from pathlib import Path

import pytest

from dogbreed.contract.environment import (
    ServingEnvironment,
    SettingError,
    TrainingEnvironment,
    base_dir,
)
from dogbreed.contract.opt_ml import OptML
from dogbreed.errors import UserError


def test_sagemaker_base_dir_moves_opt_ml_and_wins_over_the_old_name():
    assert base_dir({}) == Path("/opt/ml")
    assert base_dir({"OPT_ML": "/old"}) == Path("/old")
    assert base_dir({"SAGEMAKER_BASE_DIR": "/new", "OPT_ML": "/old"}) == Path("/new")
    assert base_dir({"SAGEMAKER_BASE_DIR": "  ", "OPT_ML": "/old"}) == Path("/old")


def test_opt_ml_takes_its_root_and_feature_cache_from_the_environment_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("DOGBREED_FEATURE_CACHE", str(tmp_path / "cache"))
    opt = OptML()
    monkeypatch.setenv("DOGBREED_FEATURE_CACHE", "/elsewhere")
    assert opt.root == tmp_path and opt.feature_cache_dir == tmp_path / "cache"


def test_serving_defaults_are_sagemakers():
    settings = ServingEnvironment.read({})
    assert (settings.port, settings.workers, settings.timeout) == (8080, None, 60)
    assert settings.max_payload_bytes == 6 * 1024 * 1024
    assert (settings.batch_strategy, settings.precision) == ("MULTI_RECORD", "fp32")
    assert settings.require_gpu is False
    assert settings.bind_host == "0.0.0.0"  # the container contract: SageMaker connects from outside


def test_serving_values_are_typed():
    settings = ServingEnvironment.read({
        "SAGEMAKER_BIND_TO_PORT": "9000", "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
        "SAGEMAKER_BATCH_STRATEGY": "single_record", "DOGBREED_PRECISION": "INT8",
        "DOGBREED_REQUIRE_GPU": "yes", "DOGBREED_BIND_HOST": "::1"})
    assert (settings.port, settings.workers, settings.timeout, settings.max_payload_mb) == (9000, 3, 30, 20)
    assert (settings.batch_strategy, settings.precision) == ("SINGLE_RECORD", "int8")
    assert settings.require_gpu is True and settings.bind_host == "::1"


@pytest.mark.parametrize("name,value,accepts", [
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "nonsense", "a whole number of MB, 1 to 1024"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0", "a whole number of MB, 1 to 1024"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "2048", "a whole number of MB, 1 to 1024"),
    ("SAGEMAKER_MODEL_SERVER_WORKERS", "two", "a whole number of processes, 1 to 1024"),
    ("SAGEMAKER_BIND_TO_PORT", "70000", "a port number, 1 to 65535"),
    ("SAGEMAKER_BATCH_STRATEGY", "ALL", "MULTI_RECORD or SINGLE_RECORD"),
    ("DOGBREED_PRECISION", "fp16", "fp32 or int8"),
    ("DOGBREED_REQUIRE_GPU", "maybe", "true or false"),
    ("DOGBREED_BIND_HOST", "localhost", "an IP address, e.g. 127.0.0.1"),
    ("DOGBREED_BIND_HOST", "127.0.0.1:80", "an IP address, e.g. 127.0.0.1"),
    ("DOGBREED_SERVE_USER", "../etc", "a user name, e.g. dogbreed or root"),
])
def test_a_bad_serving_value_names_the_variable_and_what_it_accepts(name, value, accepts):
    with pytest.raises(SettingError) as err:
        ServingEnvironment.read({name: value})
    assert str(err.value) == f"{name}={value!r}: expected {accepts}"
    assert isinstance(err.value, UserError)  # one line, never a traceback


def test_training_environment_reads_its_variables():
    env = TrainingEnvironment.read({"OPT_ML": "/j", "DOGBREED_FEATURE_CACHE": "/c",
                                    "DOGBREED_MASTER_PORT": "29501", "DOGBREED_WEIGHTS_SHA256": "AB" * 32,
                                    "SAGEMAKER_PROGRAM": "train.py"})
    assert env.base_dir == Path("/j") and env.feature_cache == Path("/c") and env.master_port == 29501
    assert env.weights_sha256 == "ab" * 32 and env.program == "train.py" and env.master_addr is None


@pytest.mark.parametrize("name,value", [("DOGBREED_MASTER_PORT", "port"), ("DOGBREED_WEIGHTS_SHA256", "abc")])
def test_a_bad_training_value_is_refused(name, value):
    with pytest.raises(SettingError, match=name):
        TrainingEnvironment.read({name: value})


def test_a_warm_pools_folder_holds_the_caches_keyed_by_content_unless_one_is_named():
    from dogbreed.contract.environment import TrainingEnvironment

    warm = {"SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY": "/opt/ml/sagemaker/warmpoolcache"}
    env = TrainingEnvironment.read(warm)
    assert env.feature_cache == Path("/opt/ml/sagemaker/warmpoolcache/dogbreed") and env.cache_by_content
    named = TrainingEnvironment.read({**warm, "DOGBREED_FEATURE_CACHE": "/cache"})
    assert named.feature_cache == Path("/cache") and not named.cache_by_content
    assert TrainingEnvironment.read({}).feature_cache is None
    assert not TrainingEnvironment.read({}).cache_by_content

"""Where the local backend runs `train`: the command and environment it gets."""

from __future__ import annotations

from dogbreed.contract.environment import FEATURE_CACHE as ENV_FEATURE_CACHE
from dogbreed.contract.opt_ml import OptML
from orchestration.local.runner import CONTAINER_FEATURE_CACHE, Runner


def test_the_cache_folder_reaches_train_as_a_process_and_in_a_container(tmp_path, monkeypatch):
    opt = OptML(tmp_path / "opt_ml")
    cache = tmp_path / "cache"
    process = Runner()
    assert process.environment(cache) == {ENV_FEATURE_CACHE: str(cache)}
    assert process.environment(None) == {}
    container = Runner("podman", "dogbreed:latest")
    cmd = container.command(opt, {}, name="t", feature_cache=cache)
    assert f"{cache}:{CONTAINER_FEATURE_CACHE}" in cmd
    assert f"{ENV_FEATURE_CACHE}={CONTAINER_FEATURE_CACHE}" in cmd
    assert cmd.index("-e") < cmd.index("dogbreed:latest")  # an engine flag, not an argument of train
    assert container.environment(cache) == {}
    monkeypatch.setenv(ENV_FEATURE_CACHE, str(cache))  # what train, started with it, reads once
    assert OptML(tmp_path / "opt_ml").feature_cache_dir == cache
    monkeypatch.setenv(ENV_FEATURE_CACHE, "")
    assert OptML(tmp_path / "opt_ml").feature_cache_dir is None


def test_a_training_container_has_no_network_unless_run_flags_give_one(tmp_path, monkeypatch):
    opt = OptML(tmp_path / "opt_ml")
    container = Runner("podman", "dogbreed:latest")
    monkeypatch.delenv("RUN_FLAGS", raising=False)
    cmd = container.command(opt, {}, name="t")
    assert cmd[cmd.index("--network") + 1] == "none" and cmd.index("--network") < cmd.index("dogbreed:latest")
    monkeypatch.setenv("RUN_FLAGS", "--network=host")
    cmd = container.command(opt, {}, name="t")
    assert "--network=host" in cmd and "none" not in cmd

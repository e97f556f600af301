import json
from pathlib import Path

import pytest

from dogbreed.contract.opt_ml import ContractError, OptML, ResourceConfig


def test_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPT_ML", str(tmp_path))
    opt = OptML()
    assert opt.root == tmp_path
    assert opt.hyperparameters_file == tmp_path / "input/config/hyperparameters.json"
    assert opt.model_dir == tmp_path / "model"
    assert opt.failure_file == tmp_path / "output/failure"
    monkeypatch.delenv("OPT_ML")
    assert OptML().root == Path("/opt/ml")


def test_missing_config_files_mean_defaults(tmp_path):
    opt = OptML(tmp_path)
    assert opt.raw_hyperparameters() == {}
    assert opt.resource_config() == ResourceConfig()


def test_non_string_hyperparameters_are_stringified(tmp_path):
    opt = OptML(tmp_path)
    opt.config_dir.mkdir(parents=True)
    opt.hyperparameters_file.write_text(json.dumps({"epochs": 3, "augment": False, "lr": "0.1"}))
    assert opt.raw_hyperparameters() == {"epochs": "3", "augment": "false", "lr": "0.1"}


def test_bad_json_is_a_contract_error(tmp_path):
    opt = OptML(tmp_path)
    opt.config_dir.mkdir(parents=True)
    opt.hyperparameters_file.write_text("{epochs: 3")
    with pytest.raises(ContractError, match="hyperparameters.json is not valid JSON"):
        opt.raw_hyperparameters()


def test_resource_config(tmp_path):
    opt = OptML(tmp_path)
    opt.config_dir.mkdir(parents=True)
    opt.resourceconfig_file.write_text(json.dumps(
        {"current_host": "algo-2", "hosts": ["algo-2", "algo-1"], "network_interface_name": "eth0"}))
    res = opt.resource_config()
    assert res.host_rank == 1 and res.master_host == "algo-1" and res.network_interface_name == "eth0"
    opt.resourceconfig_file.write_text(json.dumps({"current_host": "algo-3", "hosts": ["algo-1"]}))
    with pytest.raises(ContractError, match="not among hosts"):
        opt.resource_config()
    opt.resourceconfig_file.write_text(json.dumps({"hosts": ["algo-1"]}))
    with pytest.raises(ContractError, match="needs 'current_host' and 'hosts'"):
        opt.resource_config()


def test_channels(tmp_path):
    opt = OptML(tmp_path)
    (opt.data_dir / "train").mkdir(parents=True)
    with pytest.raises(ContractError, match="missing data channel 'valid'"):
        opt.channels()
    (opt.data_dir / "valid").mkdir()
    assert set(opt.channels()) == {"train", "valid"}
    (opt.data_dir / "test").mkdir()
    assert set(opt.channels()) == {"train", "valid", "test"}


def _with_config(root, channels: dict, hosts=("algo-1",)) -> OptML:
    opt = OptML(root)
    opt.config_dir.mkdir(parents=True, exist_ok=True)
    opt.inputdataconfig_file.write_text(json.dumps(channels))
    opt.resourceconfig_file.write_text(json.dumps({"current_host": hosts[0], "hosts": list(hosts)}))
    return opt


def test_pipe_mode_is_refused_even_though_its_channels_are_no_folders(tmp_path):
    opt = _with_config(tmp_path, {"train": {"TrainingInputMode": "Pipe"},
                                  "valid": {"TrainingInputMode": "File"}})
    (opt.data_dir / "valid").mkdir(parents=True)
    (opt.data_dir / "train_0").touch()  # what Pipe mode gives: a FIFO per epoch, no folder
    with pytest.raises(ContractError, match=r"\['train'\] use input mode \['Pipe'\].*File or FastFile"):
        opt.channels()


def test_fastfile_channels_are_folders_like_file_ones(tmp_path):
    opt = _with_config(tmp_path, {"train": {"TrainingInputMode": "FastFile"},
                                  "valid": {"TrainingInputMode": "FastFile"}})
    for name in ("train", "valid"):
        (opt.data_dir / name).mkdir(parents=True)
    assert set(opt.channels()) == {"train", "valid"}


def test_sharded_channels_are_refused_on_several_hosts_only(tmp_path):
    sharded = {name: {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"}
               for name in ("train", "valid")}
    one = _with_config(tmp_path / "one", sharded)
    for name in ("train", "valid"):
        (one.data_dir / name).mkdir(parents=True)
    assert set(one.channels()) == {"train", "valid"}  # one host holds every shard
    two = _with_config(tmp_path / "two", sharded, hosts=("algo-1", "algo-2"))
    with pytest.raises(ContractError, match="ShardedByS3Key across 2 hosts.*FullyReplicated"):
        two.channels()


def test_checkpoint_folder_follows_checkpointconfig(tmp_path):
    opt = OptML(tmp_path / "opt_ml")
    assert opt.checkpoint_dir == tmp_path / "opt_ml" / "checkpoints"
    opt.config_dir.mkdir(parents=True)
    opt.checkpointconfig_file.write_text(json.dumps({"LocalPath": str(tmp_path / "ckpt"),
                                                     "S3Uri": "s3://bucket/checkpoints/job"}))
    assert opt.checkpoint_dir == tmp_path / "opt_ml" / "checkpoints"  # read once, when first asked
    opt = OptML(tmp_path / "opt_ml")
    assert opt.checkpoint_dir == tmp_path / "ckpt"
    opt.prepare_outputs()
    assert (tmp_path / "ckpt").is_dir()


def test_failure_file_starts_with_a_one_line_reason(tmp_path):
    opt = OptML(tmp_path)
    opt.write_failure("bad thing\nhappened  here", "Traceback\n  line")
    lines = opt.failure_file.read_text().splitlines()
    assert lines == ["bad thing happened here", "Traceback", "  line"]
    opt.clear_failure()
    assert not opt.failure_file.exists()


def test_channels_are_links_copies_or_mount_points(tmp_path):
    source = tmp_path / "src" / "train"
    (source / "001.A").mkdir(parents=True)
    (source / "001.A" / "a.jpg").write_bytes(b"x")
    opt = OptML(tmp_path / "opt_ml")
    opt.write_inputs({"train": source}, {"epochs": "1"}, mount=True)
    assert opt.channel("train").is_dir() and not opt.channel("train").is_symlink()
    assert not any(opt.channel("train").iterdir())  # for an engine's -v to mount on
    opt.write_inputs({"train": source}, {"epochs": "1"})
    assert opt.channel("train").resolve() == source.resolve()
    opt.write_inputs({"train": source}, {"epochs": "1"}, copy=True)
    assert (opt.channel("train") / "001.A" / "a.jpg").read_bytes() == b"x"
    assert source.is_dir() and (source / "001.A" / "a.jpg").is_file()  # the source untouched
    opt.write_inputs({"train": source}, {"epochs": "1"}, mount=True)
    assert not any(opt.channel("train").iterdir())
    assert json.loads(opt.inputdataconfig_file.read_text())["train"]["TrainingInputMode"] == "File"

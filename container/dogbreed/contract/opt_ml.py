"""SageMaker's /opt/ml contract for training containers, in one place.

Everything the training program reads from or writes to /opt/ml goes through
:class:`OptML`. The root can be moved with ``SAGEMAKER_BASE_DIR`` (or ``OPT_ML``:
:mod:`dogbreed.contract.environment`), so that the same program runs outside a container.

Layout (SageMaker "How Amazon SageMaker AI provides training information"):

    input/config/hyperparameters.json    {name: "string value"}
    input/config/inputdataconfig.json    {channel: {"TrainingInputMode": ...}}
    input/config/resourceconfig.json     {"current_host": ..., "hosts": [...]}
    input/config/checkpointconfig.json   (optional) {"LocalPath": ..., "S3Uri": ...}
    input/config/debughookconfig.json    (optional, Debugger)
    input/config/profilerconfig.json     (optional, Profiler)
    input/data/<channel>/                train, valid, test (test optional)
    model/                               the model artefact (dogbreed.contract.artifact), tarred to S3
    checkpoints/                         synced with CheckpointConfig.S3Uri (or its LocalPath)
    output/failure                       first line = FailureReason
    output/data/                         extra outputs, tarred to output.tar.gz
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from dogbreed.contract.environment import base_dir, cache_by_content, feature_cache
from dogbreed.errors import UserError
from dogbreed.files import atomic_write_bytes

REQUIRED_CHANNELS = ("train", "valid")
OPTIONAL_CHANNELS = ("test",)
# Input modes that give the container a folder of files: File copies them before the job starts,
# FastFile mounts S3 read-only and streams on first read. Pipe gives a FIFO of records instead.
FOLDER_MODES = ("File", "FastFile")
# SageMaker shows at most this many characters of the failure file as FailureReason.
FAILURE_REASON_LIMIT = 1024


class ContractError(UserError):
    """The /opt/ml layout is not what the program needs; the message says why."""


@dataclass(frozen=True)
class ResourceConfig:
    """The cluster this container is part of (resourceconfig.json)."""

    current_host: str = "algo-1"
    hosts: tuple[str, ...] = ("algo-1",)
    network_interface_name: str | None = None
    current_instance_type: str | None = None

    @property
    def host_rank(self) -> int:
        return sorted(self.hosts).index(self.current_host)

    @property
    def master_host(self) -> str:
        return sorted(self.hosts)[0]


@dataclass
class OptML:
    """Paths and configuration files of one /opt/ml tree."""

    root: Path = field(default_factory=base_dir)
    # A folder outside /opt/ml for caches later runs share (DOGBREED_FEATURE_CACHE); None: none.
    feature_cache_dir: Path | None = field(default_factory=feature_cache)
    # Whether those caches key on the files' contents (a warm pool's folder), not their stats.
    cache_by_content: bool = field(default_factory=cache_by_content)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # -- paths -------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def data_dir(self) -> Path:
        return self.root / "input" / "data"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @cached_property
    def checkpoint_dir(self) -> Path:
        """checkpointconfig.json's LocalPath when SageMaker wrote one (the SDK's
        ``checkpoint_local_path``), else ``checkpoints/``."""
        config = read_json(self.checkpointconfig_file, ContractError, {})
        local = config.get("LocalPath") if isinstance(config, dict) else None
        return Path(local) if local else self.root / "checkpoints"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def hyperparameters_file(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def inputdataconfig_file(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resourceconfig_file(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def checkpointconfig_file(self) -> Path:
        return self.config_dir / "checkpointconfig.json"

    @property
    def debughookconfig_file(self) -> Path:
        return self.config_dir / "debughookconfig.json"

    @property
    def profilerconfig_file(self) -> Path:
        return self.config_dir / "profilerconfig.json"

    def channel(self, name: str) -> Path:
        return self.data_dir / name

    # -- configuration files ----------------------------------------------
    def raw_hyperparameters(self) -> dict[str, str]:
        """hyperparameters.json as given (SageMaker writes every value as a string)."""
        data = read_json(self.hyperparameters_file, ContractError, {})
        if not isinstance(data, dict):
            raise ContractError(f"{self.hyperparameters_file} must hold a JSON object")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}

    def input_data_config(self) -> dict[str, dict[str, Any]]:
        data = read_json(self.inputdataconfig_file, ContractError, {})
        if not isinstance(data, dict):
            raise ContractError(f"{self.inputdataconfig_file} must hold a JSON object")
        return data

    def resource_config(self) -> ResourceConfig:
        data = read_json(self.resourceconfig_file, ContractError, None)
        if data is None:
            return ResourceConfig()
        try:
            hosts = tuple(str(h) for h in data["hosts"])
            current = str(data["current_host"])
        except (KeyError, TypeError) as exc:
            raise ContractError(
                f"{self.resourceconfig_file} needs 'current_host' and 'hosts' (got {data!r})"
            ) from exc
        if not hosts or current not in hosts:
            raise ContractError(
                f"{self.resourceconfig_file}: current_host {current!r} is not among hosts {list(hosts)}"
            )
        return ResourceConfig(
            current_host=current,
            hosts=hosts,
            network_interface_name=data.get("network_interface_name"),
            current_instance_type=data.get("current_instance_type"),
        )

    def channels(self) -> dict[str, Path]:
        """The data channels present: required ones must exist, optional ones may."""
        declared = self.input_data_config()
        self._check_channel_configs(declared)
        found: dict[str, Path] = {}
        for name in REQUIRED_CHANNELS + OPTIONAL_CHANNELS:
            path = self.channel(name)
            if path.is_dir():
                found[name] = path
            elif name in REQUIRED_CHANNELS:
                hint = "" if not declared or name in declared else (
                    f" (inputdataconfig.json declares {sorted(declared)})"
                )
                raise ContractError(
                    f"missing data channel '{name}': expected a folder at {path}{hint}; "
                    f"pass channels {', '.join(REQUIRED_CHANNELS)} (and optionally "
                    f"{', '.join(OPTIONAL_CHANNELS)})"
                )
        return found

    def _check_channel_configs(self, declared: dict[str, dict[str, Any]]) -> None:
        """Refuse what this algorithm cannot read: Pipe mode, and sharded channels on several
        hosts (each host would see only part of the data; the sampler shards it already)."""
        ours = {k: v for k, v in declared.items() if k in REQUIRED_CHANNELS + OPTIONAL_CHANNELS
                and isinstance(v, dict)}
        modes = {k: v.get("TrainingInputMode", "File") for k, v in ours.items()}
        other = sorted(k for k, mode in modes.items() if mode not in FOLDER_MODES)
        if other:
            raise ContractError(
                f"channels {other} use input mode {[modes[k] for k in other]}; this algorithm reads "
                f"image folders: use TrainingInputMode {' or '.join(FOLDER_MODES)} (input_mode= in the SDK)"
            )
        sharded = sorted(k for k, v in ours.items() if v.get("S3DistributionType") == "ShardedByS3Key")
        hosts = len(self.resource_config().hosts)
        if sharded and hosts > 1:
            raise ContractError(
                f"channels {sharded} are ShardedByS3Key across {hosts} hosts, so each host holds only "
                "part of them; this algorithm needs every image on every host (it shards the training "
                "set itself): use S3DistributionType FullyReplicated (the SDK's TrainingInput distribution=)"
            )

    # -- what SageMaker writes (for local runs and tests) ------------------
    def write_inputs(self, channels: dict[str, Path], hyperparameters: dict[str, str], *,
                     hosts: tuple[str, ...] = ("algo-1",), current_host: str = "algo-1",
                     copy: bool = False, mount: bool = False,
                     debug_hook: dict[str, Any] | None = None) -> None:
        """Lay out input/ as SageMaker would: config files, channels linked (or copied, or with
        ``mount`` empty folders for a container engine to mount them on), and with
        ``debug_hook`` a debughookconfig.json."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for name, source in channels.items():
            target = self.channel(name)
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.is_dir():
                shutil.rmtree(target)
            if copy:
                shutil.copytree(source, target)
            elif mount:
                target.mkdir()
            else:
                target.symlink_to(Path(source).resolve(), target_is_directory=True)
        file_channel = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                        "RecordWrapperType": "None"}
        files = {
            self.hyperparameters_file: {k: str(v) for k, v in hyperparameters.items()},
            self.inputdataconfig_file: {name: file_channel for name in channels},
            self.resourceconfig_file: {"current_host": current_host, "hosts": list(hosts),
                                       "network_interface_name": "eth0"},
        }
        if debug_hook is not None:
            files[self.debughookconfig_file] = debug_hook
        else:
            self.debughookconfig_file.unlink(missing_ok=True)
        for path, content in files.items():
            path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")

    # -- outputs -----------------------------------------------------------
    def prepare_outputs(self) -> None:
        for path in (self.model_dir, self.checkpoint_dir, self.output_data_dir):
            path.mkdir(parents=True, exist_ok=True)

    def write_failure(self, reason: str, details: str = "") -> None:
        """First line: a one-line human reason (what SageMaker shows); then details."""
        line = " ".join(reason.split()) or "training failed"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        text = line + "\n" + (details.rstrip() + "\n" if details else "")
        atomic_write_bytes(self.failure_file, text.encode("utf-8"))

    def clear_failure(self) -> None:
        self.failure_file.unlink(missing_ok=True)


_REQUIRED = object()


def read_json(path: Path, error: type[Exception], default: Any = _REQUIRED) -> Any:
    """The JSON in ``path``; ``default`` when it does not exist (if given); any other problem
    raises ``error`` with a message that names the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if default is not _REQUIRED:
            return default
        raise error(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path} is not valid JSON: {exc}") from exc

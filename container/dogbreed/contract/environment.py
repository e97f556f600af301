"""Every environment variable the container's programs read, named once and read once per program.

``train`` reads a :class:`TrainingEnvironment` and ``serve`` a :class:`ServingEnvironment` when they
start, and pass the typed fields down; nothing else reads these variables. One policy for a bad
value: the program stops at start with one line that names the variable and says what it accepts
(:class:`SettingError`); an unset or empty variable takes its default.

SageMaker's own names where it has them (the training and inference toolkits' ``SAGEMAKER_BASE_DIR``
moves the /opt/ml root; ``OPT_ML``, this project's older name, is still read when it is unset);
``DOGBREED_*`` for this product's settings.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dogbreed.errors import UserError

T = TypeVar("T")

# -- where /opt/ml is -------------------------------------------------------
BASE_DIR = "SAGEMAKER_BASE_DIR"
BASE_DIR_ALIAS = "OPT_ML"
DEFAULT_BASE_DIR = "/opt/ml"
# -- training ---------------------------------------------------------------
# A folder outside /opt/ml where `train` keeps the frozen backbone's features, the decoded photos and
# the header scans for later runs (dogbreed.data); unset: a run keeps them for itself only.
FEATURE_CACHE = "DOGBREED_FEATURE_CACHE"
# Set by SageMaker in a job kept warm (KeepAlivePeriodInSeconds): a folder that the next job on the same
# instances finds as this one left it. Unless FEATURE_CACHE is set, `train` keeps its caches there, keyed
# by the files' contents: each job downloads its channels again, with new modification times.
WARMPOOL_CACHE = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"
WEIGHTS = "DOGBREED_WEIGHTS"  # the ImageNet weights file (dogbreed.model.weights)
WEIGHTS_SHA256 = "DOGBREED_WEIGHTS_SHA256"  # accept that file by this hash instead of torchvision's
MASTER_ADDR = "DOGBREED_MASTER_ADDR"  # the rendezvous host (a cluster without SageMaker's DNS)
MASTER_PORT = "DOGBREED_MASTER_PORT"
PROGRAM = "SAGEMAKER_PROGRAM"  # a user's own script (dogbreed.train.toolkit)
# -- serving ----------------------------------------------------------------
PORT = "SAGEMAKER_BIND_TO_PORT"
BIND_HOST = "DOGBREED_BIND_HOST"  # the address serve listens on: 0.0.0.0 in SageMaker, 127.0.0.1 locally
WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
TIMEOUT = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
MAX_PAYLOAD_IN_MB = "SAGEMAKER_MAX_PAYLOAD_IN_MB"  # batch transform's MaxPayloadInMB; async up to 1 GB
BATCH_STRATEGY = "SAGEMAKER_BATCH_STRATEGY"
PRECISION = "DOGBREED_PRECISION"
REQUIRE_GPU = "DOGBREED_REQUIRE_GPU"
SERVE_USER = "DOGBREED_SERVE_USER"  # the user serve's workers run as, when started as root

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
PRECISIONS = ("fp32", "int8")
BATCH_STRATEGIES = ("MULTI_RECORD", "SINGLE_RECORD")
DEFAULT_PAYLOAD_MB = 6  # SageMaker's real-time payload limit
MAX_PAYLOAD_MB = 1024  # an asynchronous endpoint's


class SettingError(UserError):
    """An environment variable has a value the program cannot use."""


def _get(env: Mapping[str, str], name: str, parse: Callable[[str], T], accepts: str, default: T) -> T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r}: expected {accepts}") from None


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return parse


def _choice(words: tuple[str, ...], fold: Callable[[str], str] = str.lower) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if fold(raw) not in words:
            raise ValueError(raw)
        return fold(raw)

    return parse


def _bool(raw: str) -> bool:
    if raw.lower() in TRUE_WORDS:
        return True
    if raw.lower() in FALSE_WORDS:
        return False
    raise ValueError(raw)


def _ip_address(raw: str) -> str:
    return str(ipaddress.ip_address(raw))  # ValueError for anything else (a name, a port)


def _user_name(raw: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", raw):
        raise ValueError(raw)
    return raw


def _sha256(raw: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", raw):
        raise ValueError(raw)
    return raw.lower()


def base_dir(env: Mapping[str, str] | None = None) -> Path:
    """The /opt/ml root: ``SAGEMAKER_BASE_DIR``, else ``OPT_ML``, else /opt/ml."""
    env = os.environ if env is None else env
    return Path(env.get(BASE_DIR, "").strip() or env.get(BASE_DIR_ALIAS, "").strip() or DEFAULT_BASE_DIR)


def feature_cache(env: Mapping[str, str] | None = None) -> Path | None:
    """``DOGBREED_FEATURE_CACHE``, else the warm pool's folder (its ``dogbreed`` sub-folder), else None."""
    env = os.environ if env is None else env
    warm = _get(env, WARMPOOL_CACHE, Path, "a folder", None)
    return _get(env, FEATURE_CACHE, Path, "a folder", warm and warm / "dogbreed")


def cache_by_content(env: Mapping[str, str] | None = None) -> bool:
    """Whether cache keys hash the files' contents: when the caches live in the warm pool's folder
    (the channels are new copies in each job), not when ``DOGBREED_FEATURE_CACHE`` names one."""
    env = os.environ if env is None else env
    return not env.get(FEATURE_CACHE, "").strip() and bool(env.get(WARMPOOL_CACHE, "").strip())


@dataclass(frozen=True)
class TrainingEnvironment:
    """What ``train`` takes from its environment."""

    base_dir: Path = Path(DEFAULT_BASE_DIR)
    feature_cache: Path | None = None
    cache_by_content: bool = False  # cache keys hash file contents (the warm pool's folder), not stats
    weights: Path | None = None
    weights_sha256: str | None = None
    master_addr: str | None = None
    master_port: int | None = None
    program: str | None = None

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> TrainingEnvironment:
        env = os.environ if env is None else env
        return cls(
            base_dir=base_dir(env),
            feature_cache=feature_cache(env),
            cache_by_content=cache_by_content(env),
            weights=_get(env, WEIGHTS, Path, "the path of a weights file", None),
            weights_sha256=_get(env, WEIGHTS_SHA256, _sha256, "a SHA-256 (64 hexadecimal digits)", None),
            master_addr=_get(env, MASTER_ADDR, str, "a host name or address", None),
            master_port=_get(env, MASTER_PORT, _whole(1, 65535), "a port number, 1 to 65535", None),
            program=_get(env, PROGRAM, str, "a script's file name", None),
        )


@dataclass(frozen=True)
class ServingEnvironment:
    """What ``serve`` takes from its environment (SageMaker's hosting and transform variables)."""

    base_dir: Path = Path(DEFAULT_BASE_DIR)
    port: int = 8080
    bind_host: str = "0.0.0.0"  # what SageMaker's contract needs in the container
    workers: int | None = None  # None: serve's default for the host
    timeout: int = 60
    max_payload_mb: int = DEFAULT_PAYLOAD_MB
    batch_strategy: str = "MULTI_RECORD"
    precision: str = "fp32"
    require_gpu: bool = False
    serve_user: str = "dogbreed"  # the image's unprivileged user; "root" keeps root

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * 1024 * 1024

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> ServingEnvironment:
        env = os.environ if env is None else env
        return cls(
            base_dir=base_dir(env),
            port=_get(env, PORT, _whole(1, 65535), "a port number, 1 to 65535", 8080),
            bind_host=_get(env, BIND_HOST, _ip_address, "an IP address, e.g. 127.0.0.1", "0.0.0.0"),
            workers=_get(env, WORKERS, _whole(1, 1024), "a whole number of processes, 1 to 1024", None),
            timeout=_get(env, TIMEOUT, _whole(1, 3600), "a whole number of seconds, 1 to 3600", 60),
            max_payload_mb=_get(env, MAX_PAYLOAD_IN_MB, _whole(1, MAX_PAYLOAD_MB),
                                f"a whole number of MB, 1 to {MAX_PAYLOAD_MB}", DEFAULT_PAYLOAD_MB),
            batch_strategy=_get(env, BATCH_STRATEGY, _choice(BATCH_STRATEGIES, str.upper),
                                " or ".join(BATCH_STRATEGIES), "MULTI_RECORD"),
            precision=_get(env, PRECISION, _choice(PRECISIONS), " or ".join(PRECISIONS), "fp32"),
            require_gpu=_get(env, REQUIRE_GPU, _bool, "true or false", False),
            serve_user=_get(env, SERVE_USER, _user_name, "a user name, e.g. dogbreed or root", "dogbreed"),
        )

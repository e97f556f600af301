"""The hyperparameter schema, defined once.

:class:`Hyperparameters` declares every hyperparameter with its type, default,
allowed range and (for tunable ones) its search space. The training program
parses SageMaker's hyperparameters.json (every value a string) with
:func:`parse`; the tuners build their search spaces from :func:`search_space`;
the README's table comes from :func:`markdown_table`.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from dogbreed.errors import UserError

AUTO = "auto"
# Keys SageMaker (or its SDK) may add on its own, e.g. "_tuning_objective_metric" in tuning jobs.
RESERVED_PREFIXES = ("_", "sagemaker_")
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class HyperparameterError(UserError, ValueError):
    """A hyperparameter is unknown, of the wrong type, or out of range."""


@dataclass(frozen=True)
class Tune:
    """A default search space for one hyperparameter.

    Either a numeric range (``low``..``high``, ``log`` for a logarithmic scale)
    or a list of categorical ``values``.
    """

    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Spec:
    """Type-independent facts about one hyperparameter."""

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    auto: bool = False  # the word "auto" is accepted and means "decide at run time"
    tune: Tune | None = None


def hp(default: Any, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(help=help, **spec)})


@dataclass(frozen=True)
class Hyperparameters:
    """Every hyperparameter of the training program, with its default."""

    epochs: int = hp(10, "Passes over the training set.", low=1, high=1000,
                     tune=Tune(low=4, high=16))
    batch_size: int = hp(64, "Images per step on each process (GPU).", low=1, high=4096,
                         tune=Tune(values=(32, 64, 128, 256)))
    lr: float = hp(5e-4, "AdamW learning rate (peak, before the schedule).", low=1e-8, high=1.0,
                   tune=Tune(low=1e-5, high=1e-2, log=True))
    eps: float = hp(1e-8, "AdamW epsilon.", low=1e-12, high=1e-2,
                    tune=Tune(low=1e-9, high=1e-6, log=True))
    weight_decay: float = hp(1e-2, "AdamW decoupled weight decay.", low=0.0, high=1.0,
                             tune=Tune(low=1e-4, high=1e-1, log=True))
    finetune: str = hp("full", "'full': train every layer; 'head': freeze the backbone, train "
                       "only the final Linear layer.", choices=("full", "head"))
    pretrained: bool = hp(True, "Start from ImageNet weights (false: random initialisation).")
    image_size: int = hp(224, "Side of the square crop fed to the network, in pixels.",
                         low=32, high=1024)
    augment: bool = hp(True, "Random resized crops and horizontal flips during training.")
    decode_cache: bool = hp(True, "Decode the training and validation photos once, into a file of "
                            "raw pixels (in `DOGBREED_FEATURE_CACHE` when set, else a temporary "
                            "folder), and read them from there every epoch.")
    feature_views: int = hp(4, "finetune=head: the frozen backbone's features are computed once per "
                            "image and view and cached (in the folder `DOGBREED_FEATURE_CACHE` names, "
                            "as dogctl does), and the head trains on them. With augment, this many augmented "
                            "views of each training image (epoch e uses view (e-1) mod N); without, "
                            "one. 0: no cache, the backbone runs at every step.", low=0, high=1000)
    int8_calibration_images: int = hp(256, "Training images (evaluation transform) that calibrate "
                                      "the int8 model written beside the fp32 weights, for CPU "
                                      "serving with DOGBREED_PRECISION=int8; its test accuracy is "
                                      "logged. 0: no int8 model (tuning trials' default).",
                                      low=0, high=1_000_000)
    label_smoothing: float = hp(0.1, "Label smoothing of the cross-entropy loss.", low=0.0,
                                high=0.5)
    lr_schedule: str = hp("cosine", "'cosine': decay to zero over the epochs; 'constant'.",
                          choices=("cosine", "constant"))
    patience: int = hp(5, "Stop after this many epochs without a better valid accuracy "
                       "(0: never stop early).", low=0, high=1000)
    seed: int = hp(0, "Seed of every random choice; with it a run is reproducible on the "
                   "same hardware.", low=0, high=2**31 - 1)
    workers: int | str = hp(AUTO, "Data-loading processes per training process ('auto': from "
                      "the CPU count).", low=0, high=64, auto=True)
    processes_per_host: int | str = hp(AUTO, "Training processes per host ('auto': one per GPU, "
                                 "else 1). Above 1 on CPU: DistributedDataParallel with gloo.",
                                 low=1, high=64, auto=True)
    amp: bool = hp(True, "Automatic mixed precision on GPU (bfloat16 where supported, else "
                   "float16 with loss scaling). Ignored on CPU.")
    allow_cpu_fallback: bool = hp(False, "Train on the CPU when the host has NVIDIA GPUs that CUDA "
                                  "cannot use (e.g. a driver too old for the image's CUDA); false: "
                                  "fail and say why.")
    deterministic: bool = hp(False, "Deterministic GPU kernels (slower); CPU runs are "
                             "deterministic anyway.")
    progress_seconds: float = hp(30.0, "Seconds between progress lines within an epoch "
                                 "(0: none).", low=0.0, high=86400.0)
    debugger: bool = hp(False, "The Debugger hook, its rules and the HTML report inside the job, "
                        "with no SageMaker Debugger service (`dogctl train --sagemaker` sets it): "
                        "tensors stay in the container, verdicts and report go to output/data. "
                        "A DebugHookConfig from SageMaker wins.")
    debug_interval: int = hp(0, "With debugger: training steps between saves of the weights' and "
                             "gradients' reductions (0: about 8 in the run).", low=0, high=10**9)
    profiler_interval_ms: int = hp(500, "System profile sampling interval in ms, and step "
                                   "timings (0: off). On SageMaker, profilerconfig.json decides.",
                                   low=0, high=60000)

    def to_strings(self) -> dict[str, str]:
        """As SageMaker would pass them: every value a string."""
        return {k: format_value(v) for k, v in asdict(self).items()}

    def steps_per_epoch(self, images: int, processes: int = 1) -> int:
        """Optimizer steps of one epoch: each process's share of ``images`` in batches."""
        return math.ceil(math.ceil(images / processes) / self.batch_size)

    def steps(self, images: int, processes: int = 1) -> int:
        """Optimizer steps of the whole run (the schedule's length, the Debugger's save plan)."""
        return self.epochs * self.steps_per_epoch(images, processes)


_TYPES: dict[str, Any] = typing.get_type_hints(Hyperparameters)
SPECS: dict[str, Spec] = {f.name: f.metadata["spec"] for f in fields(Hyperparameters)}
DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(Hyperparameters) if f.default is not MISSING
}


def _kind(name: str) -> str:
    spec = SPECS[name]
    if spec.choices:
        return "choice"
    if spec.auto:
        return "int"
    typ = _TYPES[name]
    return {float: "float", int: "int", bool: "bool", str: "choice"}[typ]


def format_value(value: Any) -> str:
    """A value as hyperparameters.json writes it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unquote(raw: str) -> str:
    # The SageMaker SDK JSON-encodes values for some estimators: '"full"' -> 'full'.
    text = raw.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def allowed(name: str) -> str:
    """A human description of the values ``name`` accepts."""
    spec, kind = SPECS[name], _kind(name)
    if kind == "choice":
        return "one of " + ", ".join(repr(c) for c in spec.choices or ())
    if kind == "bool":
        return "true or false"
    noun = "an integer" if kind == "int" else "a number"
    text = f"{noun} from {format_value(spec.low)} to {format_value(spec.high)}"
    return text + (f" or '{AUTO}'" if spec.auto else "")


def parse_value(name: str, raw: str) -> Any:
    """Parse one string value; raise :class:`HyperparameterError` naming the key."""
    spec, kind = SPECS[name], _kind(name)
    text = _unquote(str(raw))
    bad = HyperparameterError(f"hyperparameter '{name}': got {raw!r}; allowed: {allowed(name)}")
    if spec.auto and text.lower() == AUTO:
        return AUTO
    if kind == "choice":
        match = [c for c in spec.choices or () if c == text.lower()]
        if not match:
            raise bad
        return match[0]
    if kind == "bool":
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise bad
    try:
        number = float(text)
    except ValueError:
        raise bad from None
    if not math.isfinite(number):
        raise bad
    if kind == "int":
        if not number.is_integer():
            raise bad
        number = int(number)
    if (spec.low is not None and number < spec.low) or (spec.high is not None and number > spec.high):
        raise bad
    return number


def parse(raw: dict[str, str], *, ignored: list[str] | None = None) -> Hyperparameters:
    """Validate hyperparameters.json: unknown keys, types and ranges all fail clearly.

    Keys SageMaker reserves (starting with ``_`` or ``sagemaker_``) are skipped and,
    if ``ignored`` is given, appended to it.
    """
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(RESERVED_PREFIXES):
            if ignored is not None:
                ignored.append(key)
            continue
        if key not in SPECS:
            close = difflib.get_close_matches(key, SPECS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise HyperparameterError(
                f"unknown hyperparameter '{key}'{hint}; known: {', '.join(SPECS)}"
            )
        values[key] = parse_value(key, value)
    params = Hyperparameters(**values)
    if params.finetune == "head" and not params.pretrained:
        raise HyperparameterError(
            "hyperparameter 'finetune': 'head' trains only the last layer on top of a frozen "
            "backbone, which needs pretrained=true; use finetune=full to train from scratch"
        )
    return params


def search_space(names: list[str] | None = None) -> dict[str, Tune]:
    """The default search space: every tunable hyperparameter (or those named)."""
    tunable = {n: s.tune for n, s in SPECS.items() if s.tune is not None}
    if names is None:
        return tunable
    missing = [n for n in names if n not in tunable]
    if missing:
        raise HyperparameterError(
            f"not tunable: {', '.join(missing)}; tunable: {', '.join(tunable)}"
        )
    return {n: tunable[n] for n in names}


def value_type(name: str) -> str:
    """'float', 'int', 'bool' or 'choice': how tuners should treat ``name``."""
    return _kind(name)


def describe_tune(tune: Tune | None) -> str:
    """A search range as the docs and `dogctl tune` show it."""
    if tune is None:
        return ""
    if tune.values is not None:
        return "{" + ", ".join(format_value(v) for v in tune.values) + "}"
    scale = "log" if tune.log else "linear"
    return f"{format_value(tune.low)} to {format_value(tune.high)} ({scale})"


def markdown_table() -> str:
    """The hyperparameter reference as a Markdown table (README)."""
    rows = ["| name | default | allowed | tuned over | meaning |", "|---|---|---|---|---|"]
    for name, spec in SPECS.items():
        rows.append(
            f"| `{name}` | `{format_value(DEFAULTS[name])}` | {allowed(name)} | "
            f"{describe_tune(spec.tune)} | {spec.help} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m dogbreed.contract.hyperparameters > table.md
    sys.stdout.write(markdown_table())

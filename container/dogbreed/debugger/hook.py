"""SageMaker Debugger (smdebug) in the training loop, at no risk to the run.

The hook is created from /opt/ml/input/config/debughookconfig.json, which
SageMaker writes when a job has a DebugHookConfig (and ``dogctl`` writes for
local runs). No file: no hook, no overhead. If smdebug cannot be imported or
fails at any point, training carries on after one warning.

:func:`collections` is the one definition of what is saved: the local
configuration (:func:`hook_config`) and the SageMaker DebugHookConfig built by
the orchestration both come from it. Big tensors are saved as two or three
scalars each (smdebug's reductions), never in full: a run's tensors take megabytes,
not gigabytes (a full save of ResNet18's weights and gradients is 94 MB).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogbreed.files import atomic_write_bytes

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)
TENSORS_DIR = "tensors"  # under /opt/ml/output, SageMaker's default LocalPath
NEVER = {"eval.start_step": "1", "eval.save_interval": "1000000000"}  # nothing in EVAL mode
DEBUG_SAVES = 8  # saves after the first ten steps, unless an interval is given
# What each big tensor is saved as: the scalars the rules read, no more (each costs a record per
# tensor and save). Min and max: NaN propagates into both, an infinity into one (ExplodingTensor);
# mean |gradient| (VanishingGradient); variance of ReLU inputs (PoorWeightInitialization).
EXTREMES = "min,max"
REDUCTIONS = {"weights": EXTREMES, "biases": EXTREMES, "gradients": f"{EXTREMES},abs_mean",
              "relu_input": f"{EXTREMES},variance"}
GRADIENT_SAMPLE = "sampled_gradients"  # collection (and tensor name) of the gradient sample
SAMPLE_SIZE = 65_536  # gradient values in the sample: 256 KB a step


def collections(interval: int, first_steps: int = 10, *, full: bool = False) -> dict[str, dict[str, str]]:
    """Collection name -> CollectionParameters.

    ``full``: weights, biases, gradients and ReLU inputs saved whole, not reduced, at the same
    steps: for SageMaker's managed rule containers (``--debugger managed``), whose code expects
    whole tensors; the in-container rules read either.

    Weights, biases and gradients: their :data:`REDUCTIONS` at the first ``first_steps``
    training steps (PoorWeightInitialization looks at steps 0-9) and every ``interval``
    training steps; ReLU inputs: their reductions at the first steps only. At those first
    steps, also :data:`SAMPLE_SIZE` gradient values drawn from all gradients (the
    percentiles PoorWeightInitialization needs; see :class:`GradientSample`). Losses at every
    step of training and evaluation (the trend rules and the report's curves).
    """
    first = ",".join(str(i) for i in range(first_steps))
    periodic = {"train.save_interval": str(interval), "train.save_steps": first, **NEVER}
    at_start = {"train.save_steps": first, "train.save_interval": "1000000000", **NEVER}
    def reduced(name: str) -> dict[str, str]:
        return {} if full else {"reductions": REDUCTIONS[name]}

    return {
        "weights": {**periodic, **reduced("weights")},
        "biases": {**periodic, **reduced("biases")},
        "gradients": {**periodic, **reduced("gradients")},
        "relu_input": {"include_regex": ".*relu_input", **at_start, **reduced("relu_input")},
        GRADIENT_SAMPLE: {"include_regex": f"^{GRADIENT_SAMPLE}", **at_start},  # values, no reductions
        "losses": {"save_interval": "1"},
    }


def hook_config(local_path: Path, interval: int = 100, first_steps: int = 10, *,
                full: bool = False) -> dict[str, Any]:
    """A debughookconfig.json like the one SageMaker writes, for local runs (``full``: the
    managed path's, with whole tensors)."""
    return {
        "LocalPath": str(local_path),
        "HookParameters": {},
        "CollectionConfigurations": [
            {"CollectionName": name, "CollectionParameters": params}
            for name, params in collections(interval, first_steps, full=full).items()
        ],
    }


def save_interval(steps: int, interval: int = 0) -> int:
    """Training steps between saves of weights and gradients: ``interval`` when given, else
    about :data:`DEBUG_SAVES` saves in a run of ``steps`` steps."""
    return interval or max(1, steps // DEBUG_SAVES)


def job_config(sagemaker_file: Path, enabled: bool, tensors_dir: Path, *, steps: int,
               interval: int = 0, announce: bool = True) -> Path | None:
    """The hook configuration of a training job: SageMaker's debughookconfig.json when the job
    has a DebugHookConfig; else, when ``enabled`` (the ``debugger`` hyperparameter), the same kind
    of file written here (weights and gradients every ``interval`` of the ``steps`` steps, or
    about :data:`DEBUG_SAVES` times; tensors in ``tensors_dir``); else None: no hook."""
    if sagemaker_file.is_file():
        return sagemaker_file
    if not enabled:
        return None
    interval = save_interval(steps, interval)
    path = tensors_dir.parent / sagemaker_file.name  # output/, which SageMaker does not upload
    atomic_write_bytes(path, json.dumps(hook_config(tensors_dir, interval)).encode())
    if announce:
        log.info("debugger: in this job (debugger=true): tensor reductions at steps 0-9 and every "
                 "%d steps of %d, losses at every step", interval, steps)
    return path


class GradientSample:
    """:data:`SAMPLE_SIZE` positions drawn once, uniformly and with a fixed seed, from the
    gradient values of ``params`` concatenated; :meth:`values` reads them after a backward pass.

    A uniform sample's 5th and 95th percentiles estimate those of all the gradients (the spread
    PoorWeightInitialization checks) to about 0.1 percentile point, at 256 KB a step instead of
    47 MB for ResNet18's full gradients.
    """

    def __init__(self, params: list[torch.Tensor], size: int = SAMPLE_SIZE, seed: int = 0):
        import torch

        total = sum(p.numel() for p in params)
        picks = torch.randint(total, (size,), generator=torch.Generator().manual_seed(seed)).sort().values
        self.parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        start = 0
        for p in params:
            mine = picks[(picks >= start) & (picks < start + p.numel())] - start
            if mine.numel():
                self.parts.append((p, mine.to(p.device)))
            start += p.numel()

    def values(self) -> torch.Tensor:
        import torch

        return torch.cat([p.grad.detach().reshape(-1)[at].float() for p, at in self.parts
                          if p.grad is not None])


def _disable_relu_inplace(model: nn.Module) -> None:
    # A forward hook on an in-place ReLU would see its input already rectified;
    # "relu_input" must be the real input (same arithmetic, a little more memory).
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False


class DebugHook:
    """smdebug's PyTorch hook behind methods that never raise.

    Every callback smdebug attaches to the model (forward, pre-forward, gradient
    hooks) is guarded too: smdebug validates its collections lazily, in the first
    forward pass, and outside SageMaker its own error handler re-raises. The first
    error turns the debugger off for the rest of the run, with one warning.
    """

    def __init__(self, hook: Any = None, modes: Any = None):
        self._hook = hook
        self._modes = modes
        self._sample: GradientSample | None = None

    @property
    def active(self) -> bool:
        return self._hook is not None

    @classmethod
    def from_config(cls, config_file: Path) -> DebugHook:
        if not config_file.is_file():
            return cls()
        # smdebug's framework profiler is not used (our profiler module times the steps).
        os.environ.setdefault("SMPROFILER_CONFIG_PATH", str(config_file.with_name("no-smdebug-profiler")))
        try:
            import smdebug.pytorch as smd

            hook = smd.Hook.create_from_json_file(str(config_file))
        except Exception as exc:  # noqa: BLE001 - a debugger problem never costs the run
            log.warning("debugger disabled: %s could not be used (%s: %s); training goes on",
                        config_file, type(exc).__name__, exc)
            return cls()
        log.info("debugger on: saving tensors to %s", json.loads(config_file.read_text()).get(
            "LocalPath", "/opt/ml/output/tensors"))
        debug_hook = cls(hook, smd.modes)
        debug_hook._guard_callbacks()
        return debug_hook

    def _disable(self, what: str, exc: BaseException) -> None:
        if self._hook is not None:
            log.warning("debugger disabled after an error in %s (%s: %s); training goes on",
                        what, type(exc).__name__, exc)
        self._hook = None

    def _guarded(self, what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self._hook is None:
                return None
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a debugger problem never costs the run
                self._disable(what, exc)
                return None

        return guarded

    def _guard_callbacks(self) -> None:
        hook = self._hook
        for name in ("forward_pre_hook", "forward_hook", "fhook"):
            setattr(hook, name, self._guarded(name, getattr(hook, name)))
        make_backward = hook.backward_hook
        hook.backward_hook = lambda tensor_name: self._guarded("backward_hook", make_backward(tensor_name))

    def _call(self, what: str, fn: Callable[[], Any]) -> None:
        self._guarded(what, fn)()

    def register(self, model: nn.Module, loss: nn.Module) -> None:
        def do() -> None:
            _disable_relu_inplace(model)
            self._hook.register_module(model)
            self._hook.register_loss(loss)
            trainable = [p for p in model.parameters() if p.requires_grad]
            self._sample = GradientSample(trainable) if trainable else None

        self._call("register", do)

    def save_gradient_sample(self) -> None:
        """After the backward pass: the gradient sample, at the steps that save it (0-9)."""
        def do() -> None:
            if self._sample is None:
                return
            if self._hook.should_save_tensor_or_collection(GRADIENT_SAMPLE, GRADIENT_SAMPLE):
                self._hook.record_tensor_value(GRADIENT_SAMPLE, self._sample.values())

        self._call("save_gradient_sample", do)

    def train_mode(self) -> None:
        self._call("set_mode", lambda: self._hook.set_mode(self._modes.TRAIN))

    def eval_mode(self) -> None:
        self._call("set_mode", lambda: self._hook.set_mode(self._modes.EVAL))

    def close(self) -> None:
        self._call("close", lambda: self._hook.close())

"""Where the local backend runs `train`: in the image, in a container engine, or as a process.

``auto`` (the default) takes the container when an engine answers (docker/engine.sh: docker with
its daemon, or podman) and the image is built locally (``make build``), and a process of this
checkout's code otherwise, saying why. In the container, the run's /opt/ml folder is mounted on
/opt/ml and each data channel, read-only, on /opt/ml/input/data/<channel>, exactly as SageMaker
lays them out; the folder of cached backbone features, when given, read-write on
/opt/feature-cache (named by DOGBREED_FEATURE_CACHE, as a process gets its host path); GPUs are
passed in when the host has NVIDIA's driver; the container has no network (``--network none``).
Extra engine flags: the RUN_FLAGS environment variable (as for local_test/; a ``--network`` there
replaces ours).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from dogbreed.contract.environment import FEATURE_CACHE as ENV_FEATURE_CACHE
from dogbreed.contract.opt_ml import OptML
from dogbreed.errors import UserError

from ..registry import RegistryError, engine, local_image

KINDS = ("auto", "container", "process")
DEFAULT_IMAGE = "dogbreed:latest"
CONTAINER_OPT_ML = Path("/opt/ml")
CONTAINER_FEATURE_CACHE = Path("/opt/feature-cache")
SHM_SIZE = "2g"  # data-loader workers share batches through /dev/shm (docker's default: 64 MB)
STOP_SECONDS = 30  # after SIGTERM, before the engine kills the container


class RunnerError(UserError):
    """The asked-for runner cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Runner:
    """A way to start `train` on an /opt/ml folder: a container of ``image`` when ``engine`` is
    set, else a process. ``why``: how it was chosen, for the user."""

    engine: str | None = None
    image: str | None = None
    why: str = ""
    device_flags: tuple[str, ...] = ()

    @property
    def in_container(self) -> bool:
        return self.engine is not None

    def describe(self) -> str:
        where = f"in the container {self.image} ({self.engine})" if self.in_container else "as a process"
        return where + (f": {self.why}" if self.why else "")

    def container_name(self, run_dir: Path) -> str:
        return f"dogctl-{run_dir.name}-{uuid.uuid4().hex[:6]}"

    def command(self, opt: OptML, channels: dict[str, Path], *, name: str,
                cpus: set[int] | None = None, feature_cache: Path | None = None) -> list[str]:
        """How to start `train` (a process gets ``feature_cache`` from :meth:`environment`)."""
        if not self.in_container:
            return [sys.executable, "-m", "dogbreed.train"]
        assert self.engine and self.image
        cmd = [self.engine, "run", "--rm", "--name", name, "--shm-size", SHM_SIZE,
               "-v", f"{opt.root.resolve()}:{CONTAINER_OPT_ML}"]
        for channel, source in sorted(channels.items()):
            cmd += ["-v", f"{Path(source).resolve()}:{CONTAINER_OPT_ML}/input/data/{channel}:ro"]
        if feature_cache:
            cmd += ["-v", f"{feature_cache.resolve()}:{CONTAINER_FEATURE_CACHE}",
                    "-e", f"{ENV_FEATURE_CACHE}={CONTAINER_FEATURE_CACHE}"]
        if cpus:
            cmd += ["--cpuset-cpus", ",".join(map(str, sorted(cpus)))]
        if os.path.basename(self.engine) == "docker" and os.getuid() != 0:
            # Files in the run folder owned by the user, not root (rootless podman maps root already).
            cmd += ["--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
        flags = shlex.split(os.environ.get("RUN_FLAGS", ""))
        if not any(flag.startswith(("--network", "--net")) for flag in flags):
            # The built-in trainer needs no network (the image carries the ImageNet weights; dogctl
            # refuses the hyperparameters that would name a user's script): none to reach out with.
            cmd += ["--network", "none"]
        cmd += [*self.device_flags, *flags, self.image, "train"]
        return cmd

    def environment(self, feature_cache: Path | None) -> dict[str, str]:
        """What a process of `train` adds to its environment (a container is told in its command)."""
        if self.in_container or feature_cache is None:
            return {}
        return {ENV_FEATURE_CACHE: str(feature_cache.resolve())}

    def stop(self, proc: subprocess.Popen, name: str, *, wait: bool = True) -> None:
        """SIGTERM to `train` (it stops at once, checkpoints kept), then with ``wait`` wait for it
        (not from a signal handler: the interrupted code may be waiting on it already)."""
        if self.in_container:
            assert self.engine
            subprocess.run([self.engine, "stop", "-t", str(STOP_SECONDS), name],
                           capture_output=True, timeout=STOP_SECONDS + 60)
        elif proc.poll() is None:
            proc.terminate()
        if wait:
            proc.wait()

    def remove(self, name: str) -> None:
        """Make sure a finished run's container is gone: ``--rm`` can lose a race with a stop
        from elsewhere, leaving a stopped container behind. Nothing to do for a process."""
        if self.in_container:
            assert self.engine
            subprocess.run([self.engine, "rm", "-f", name], capture_output=True, timeout=STOP_SECONDS + 60)


PROCESS = Runner()  # this checkout's code, as a process


def gpu_flags(engine_name: str) -> tuple[str, ...]:
    """Engine flags that pass the host's NVIDIA GPUs in (none without a working nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if not smi or subprocess.run([smi, "-L"], capture_output=True).returncode != 0:
        return ()
    if os.path.basename(engine_name) == "podman":
        return ("--device", "nvidia.com/gpu=all")  # CDI: `nvidia-ctk cdi generate` on the host
    return ("--gpus", "all")


def choose(kind: str = "auto", image: str = DEFAULT_IMAGE) -> Runner:
    """The runner for ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise RunnerError(f"runner {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "process":
        return Runner(why="chosen with --runner process (or DOGCTL_RUNNER)")
    try:
        engine_name = engine()
    except RegistryError as exc:
        if kind == "container":
            raise RunnerError(f"{exc} (or use --runner process)") from exc
        return Runner(why=str(exc).splitlines()[0])
    info = local_image(engine_name, image)
    if info is None:
        if kind == "container":
            raise RunnerError(f"no local image {image} in {engine_name}: `make build` it "
                              "(or pass --local-image, or use --runner process)")
        return Runner(why=f"no local image {image} (`make build` to train in it)")
    return Runner(engine_name, image, info, gpu_flags(engine_name))

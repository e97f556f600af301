"""The container tests' engine and image, built once for the session.

Needs a working engine (docker with its daemon, or podman: `.ci/container-engine.sh` sets podman
up on a Debian machine). Without one the tests are skipped, except in CI (CI=true), where that is
a failure. BASE_IMAGE picks the base; by default a local stand-in (docker/standin-base.sh) is
built once and reused, and the image is built without network-only steps (weights, CUDA compat).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.container.support import ROOT, need, sh

IMAGE = f"localhost/dogbreed-test:{uuid.uuid4().hex[:8]}"
# The first test builds the stand-in base and the image (each up to 30 minutes: sh's timeouts).
CONTAINER_TIMEOUT = 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A longer bound than the suite's 300 s for the tests of this folder."""
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.timeout(CONTAINER_TIMEOUT))


@pytest.fixture(scope="session")
def engine() -> str:
    found = subprocess.run(["bash", str(ROOT / "docker" / "engine.sh")], capture_output=True, text=True)
    if found.returncode != 0:
        need("no container engine", found.stderr.strip())
    return found.stdout.strip()


@pytest.fixture(scope="session")
def image(engine: str):
    """The project image, built from docker/Dockerfile; removed at the end."""
    env = {"BUILDAH_ISOLATION": os.environ.get("BUILDAH_ISOLATION", "chroot")}
    if not os.environ.get("BASE_IMAGE"):
        pip = f"{ROOT / '.venv' / 'bin' / 'python'} -m pip"
        base = sh("bash", "docker/standin-base.sh", env={"PIP": pip}, timeout=1800).stdout.strip()
        env.update(BASE_IMAGE=base, CUDA_COMPAT="", PRETRAINED_WEIGHTS="false")
    started = time.monotonic()
    built = sh("bash", "docker/build.sh", IMAGE, env=env, timeout=1800)
    said = [line for line in built.stderr.splitlines()
            if line.startswith("build: ") and " build -f " not in line]  # not the command line
    print(f"\nimage build: {time.monotonic() - started:.0f} s; {'; '.join(said)}")
    yield IMAGE
    sh(engine, "rmi", "-f", IMAGE, check=False)

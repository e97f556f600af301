"""docker/entrypoint.sh on the host: command dispatch and the CUDA forward-compatibility switch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.sh"
DRIVER = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Tue Jan  1 00:00:00 UTC 2026\n"
          "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")


@pytest.fixture
def sandbox(tmp_path):
    """Fake `train`/`serve` commands that print what they got, a compat folder and a driver file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("train", "serve"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $* LD=${{LD_LIBRARY_PATH:-}}"\n')
        script.chmod(0o755)
    compat = tmp_path / "compat"
    compat.mkdir()
    (compat / "libcuda.so.580.65.06").write_bytes(b"")
    (compat / "libcuda.so.1").symlink_to("libcuda.so.580.65.06")
    driver = tmp_path / "version"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DOGBREED_CUDA_COMPAT_DIR": str(compat),
           "DOGBREED_NVIDIA_VERSION_FILE": str(driver), "LD_LIBRARY_PATH": "/usr/lib/x"}
    return env, driver, compat


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True,
                          timeout=30)


def test_train_and_serve_run_the_programs_with_their_arguments(sandbox):
    env, _, _ = sandbox
    assert run(env, "train").stdout.startswith("train  LD=/usr/lib/x")
    assert run(env, "serve", "--model-dir", "/m").stdout.startswith("serve --model-dir /m")
    assert run(env).stdout.startswith("serve ")  # no command: serve, as SageMaker's default
    other = run(env, "echo", "passed", "through")
    assert other.stdout == "passed through\n"


def test_compat_libraries_go_first_only_for_an_older_driver(sandbox):
    env, driver, compat = sandbox
    driver.write_text(DRIVER.format(v="535.230.02"))
    old = run(env, "train")
    assert old.stdout.strip() == f"train  LD={compat}:/usr/lib/x"
    assert "host NVIDIA driver 535 < 580" in old.stderr
    driver.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.163.01  Release Build "
                      "(dvs-builder@U16-I3-B03-4-3)  Thu Jan 1 00:00:00 UTC 2026\n")
    assert run(env, "train").stdout.strip() == f"train  LD={compat}:/usr/lib/x"
    driver.write_text(DRIVER.format(v="580.95.05"))
    assert run(env, "train").stdout.strip() == "train  LD=/usr/lib/x"
    driver.write_text(DRIVER.format(v="590.10.01"))
    assert run(env, "train").stdout.strip() == "train  LD=/usr/lib/x"


def test_no_gpu_or_no_compat_folder_changes_nothing(sandbox, tmp_path):
    env, _, _ = sandbox  # the driver file does not exist: no GPU
    assert run(env, "train").stdout.strip() == "train  LD=/usr/lib/x"
    env = {**env, "DOGBREED_CUDA_COMPAT_DIR": str(tmp_path / "none")}
    assert run(env, "train").stdout.strip() == "train  LD=/usr/lib/x"

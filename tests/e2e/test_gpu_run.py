"""bench/gpu_run.py, the GPU figures' script, on this machine's CPU: without CUDA it says so and
measures nothing; ``--smoke`` runs every one of its steps on the CPU (training, the loader, the
forward passes, the real serve under load), so the script is known to run before a GPU is lent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_run.py"
pytestmark = pytest.mark.e2e


def run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOGBREED_", "SAGEMAKER_"))}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**env, "CUDA_VISIBLE_DEVICES": ""})


def test_without_a_gpu_it_says_so_and_measures_nothing():
    out = run(timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("gpu_run: no GPU found (torch.cuda.is_available() is False): nothing "
                                  "measured; run it on a CUDA machine")


@pytest.mark.slow
def test_every_step_runs_on_the_cpu_in_smoke_mode(sample_photos):
    out = run("--smoke", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    table = out.stdout.split("\n| what", 1)[1].splitlines()[2:]
    # The loader's workers follow the cores this test has (one under pytest-xdist: none).
    rows = {re.sub(r"\(\d+ workers\)", "(N workers)", line.split("|")[1].strip()): line.split("|")[2].strip()
            for line in table}
    training = [f"AMP training, {kind}, 8 x 64 px (float32), {fed}" for kind in ("full", "head")
                for fed in ("tensors on the GPU", "the loader decoding photos (N workers)")]
    serving = ["serve, float32, c=1", "serve, float32, c=16"]
    assert list(rows) == [*training, "forward passes, batch 8, float32", "forward passes, batch 8, bfloat16",
                          *serving], out.stdout
    for name in training:
        assert float(rows[name].removesuffix(" images/s")) > 0, name
    assert all(float(rows[name].removesuffix(" req/s")) > 0 for name in serving)
    assert "an epoch of 6680 in" in out.stdout and "Traceback" not in out.stdout + out.stderr

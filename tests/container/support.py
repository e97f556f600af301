"""What the container tests share: the repository root and a command runner."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sh(*cmd: str, env: dict[str, str] | None = None, timeout: float = 900,
       check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, cwd=ROOT)
    if check:
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def inspect(engine: str, image: str) -> dict:
    return json.loads(sh(engine, "image", "inspect", image).stdout)[0]


def need(what: str, why: str) -> None:
    """Skip for want of ``what``, or fail in CI, where .ci/container-engine.sh provides it."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} in CI: {why}")
    pytest.skip(why)

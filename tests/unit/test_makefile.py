"""The Makefile is safe against the environment: a path comes from make's command line, never from
an environment variable that shares its name, and `make clean` deletes nothing outside the checkout.
Each test runs the real Makefile in a copy of the checkout's top level, never in this checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A stand-in checkout: the real Makefile, a .venv and a work folder to clean."""
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copy(ROOT / "Makefile", root / "Makefile")
    for folder in (".venv/bin", "work/runs"):
        (root / folder).mkdir(parents=True)
    return root


def make(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "--no-print-directory", "-C", str(root), *args],
                          env={**clean_env, **env}, capture_output=True, text=True, timeout=60)


def test_clean_ignores_a_work_variable_in_the_environment(checkout, tmp_path):
    elsewhere = tmp_path / "someone-elses-work"
    (elsewhere / "data").mkdir(parents=True)
    done = make(checkout, "clean", WORK=str(elsewhere), VENV=str(elsewhere))
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "data").is_dir()
    assert not (checkout / ".venv").exists() and not (checkout / "work").exists()


@pytest.mark.parametrize("outside", ["ABSOLUTE", "..", "../..", "/", "."])
def test_clean_never_deletes_outside_the_checkout_even_when_told_to(checkout, tmp_path, outside):
    elsewhere = tmp_path / "keep"
    (elsewhere / "data").mkdir(parents=True)
    target = str(elsewhere) if outside == "ABSOLUTE" else outside
    done = make(checkout, "clean", f"WORK={target}")
    assert done.returncode == 0, done.stderr
    assert "left alone" in done.stderr
    assert (elsewhere / "data").is_dir() and (checkout / "Makefile").is_file()
    assert not (checkout / ".venv").exists()  # what is inside still goes


def test_no_path_or_resource_variable_is_taken_from_the_environment():
    text = (ROOT / "Makefile").read_text()
    from_env = set(re.findall(r"^([A-Z_]+) \?=", text, re.M))
    assert from_env <= {"TEST_JOBS", "TEST_JOBS_MAX", "DEMO_TRIALS", "DEMO_TUNE", "DEMO_HP"}, from_env

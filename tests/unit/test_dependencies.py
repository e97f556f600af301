"""The installed set is the pinned one, and its only broken declaration is the one
requirements-nodeps.txt names (smdebug's protobuf<=3.20.3)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pins(name: str) -> dict[str, str]:
    lines = (ROOT / name).read_text().splitlines()
    return {m[1].lower().replace("_", "-"): m[2] for m in (re.match(r"([A-Za-z0-9_.-]+)==(\S+)$", line)
                                                           for line in lines) if m}


def test_pip_check_finds_only_the_declarations_installed_apart():
    apart = pins("requirements-nodeps.txt")
    assert apart == {"smdebug": "1.0.34"}
    assert not set(apart) & set(pins("requirements.txt"))  # each package pinned once
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                         timeout=120).stdout
    broken = [line for line in out.splitlines() if " has requirement " in line or " requires " in line]
    assert broken, out  # smdebug's own declaration is broken by design: pip must say so
    assert all(line.split()[0].lower() in apart for line in broken), broken


def test_what_is_installed_is_what_is_pinned():
    wanted = {**pins("requirements.txt"), **pins("requirements-nodeps.txt")}
    for name in ("numpy", "protobuf", "smdebug", "sagemaker-core", "sagemaker-training", "torch"):
        assert metadata.version(name).split("+")[0] == wanted[name], name

"""`dogctl` starts fast: the commands that need no model import neither torch nor the SDK."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "sagemaker", "smdebug", "matplotlib", "optuna", "PIL")


@pytest.mark.parametrize("modules", [
    ["orchestration.cli"],  # dogctl --help, and every command's parsing
    ["orchestration.cli", "orchestration.local.hosting", "dogbreed.contract.jobdir",
     "orchestration.tuning"],  # summary
    ["orchestration.cli", "orchestration.local", "orchestration.sagemaker"],  # choosing a backend
])
def test_no_heavy_import_before_a_command_needs_it(modules):
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""

"""A hang fails its test instead of stalling CI: pytest-timeout is installed and the suite sets a
bound per test (checked on a real inner pytest run that hangs)."""

import tomllib
from pathlib import Path

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]


def test_the_suite_bounds_every_test():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < options["timeout"] <= 600


def test_a_hanging_test_fails_after_its_bound(pytester):
    pytester.makeini("[pytest]\ntimeout = 2\n")
    pytester.makepyfile("import threading\n\ndef test_hangs():\n    threading.Event().wait(600)\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(failed=1)
    assert "Timeout" in result.stdout.str()

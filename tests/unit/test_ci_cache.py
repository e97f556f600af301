"""CI's cached virtual environment (.ci/venv-cache.sh): its console scripts outlive the clone that
installed them, and a cache whose scripts are dead is rebuilt."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clone(where: Path) -> Path:
    """The two files the cache script reads, in a folder laid out like a checkout."""
    (where / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "venv-cache.sh", where / ".ci")
    (where / "requirements.txt").write_text("tool==1.0\n")
    (where / "requirements-nodeps.txt").write_text("")
    return where


def cache_venv(checkout: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(checkout / ".ci" / "venv-cache.sh")], capture_output=True, text=True,
                          env={**os.environ, "DOGBREED_CI_CACHE": str(cache)}, timeout=120, check=True)


def tool_wheel(folder: Path) -> Path:
    """A one-module wheel with a console script, `tool`, that prints "tool ran"."""
    wheel = folder / "tool-1.0-py3-none-any.whl"
    files = {"tool.py": "def main():\n    print('tool ran')\n",
             "tool-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tool\nVersion: 1.0\n",
             "tool-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                         "Tag: py3-none-any\n",
             "tool-1.0.dist-info/entry_points.txt": "[console_scripts]\ntool = tool:main\n"}
    record = "tool-1.0.dist-info/RECORD"
    files[record] = "".join(f"{name},,\n" for name in [*files, record])
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def test_scripts_installed_by_one_clone_run_from_the_next(tmp_path):
    cache = tmp_path / "cache"
    first = clone(tmp_path / "first")
    venv = Path(cache_venv(first, cache).stdout.strip())
    assert venv.parent == cache and (first / ".venv").resolve() == venv
    # what `make install` does, through the interpreter path that .ci/run hands make as VENV
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
                    str(tool_wheel(tmp_path))], check=True, timeout=120)
    shutil.rmtree(first)  # CI deletes the clone

    second = clone(tmp_path / "second")
    again = cache_venv(second, cache)
    assert Path(again.stdout.strip()) == venv and "rebuilding" not in again.stderr
    ran = subprocess.run([str(second / ".venv" / "bin" / "tool")], capture_output=True, text=True, timeout=30)
    assert ran.stdout == "tool ran\n"


def test_a_cache_whose_scripts_name_a_deleted_interpreter_is_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    checkout = clone(tmp_path / "checkout")
    venv = Path(cache_venv(checkout, cache).stdout.strip())
    dead = venv / "bin" / "moto_server"
    dead.write_text(f"#!{tmp_path}/gone/.venv/bin/python\nimport moto\n")
    dead.chmod(0o755)
    alive = venv / "bin" / "pip"
    assert alive.read_text().startswith(f"#!{venv}/bin/python")

    again = cache_venv(checkout, cache)
    assert "has scripts for an interpreter that is gone" in again.stderr and str(dead) in again.stderr
    assert Path(again.stdout.strip()) == venv and not dead.exists()
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "pass"], timeout=30).returncode == 0

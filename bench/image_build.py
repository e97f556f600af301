"""Image build times and size: a cold build, then a rebuild after a code-only change, in one run.

    .venv/bin/python bench/image_build.py [--base IMAGE]

Builds docker/Dockerfile with no cache (the cold build), then copies the build context, changes
one line of the package's code in the copy and builds again (what a developer waits for), and
prints both times with the sizes of the image and of its base. Without --base, the local stand-in
base (docker/standin-base.sh, built once) with the network-only steps off, as in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from orchestration import registry

ROOT = Path(__file__).resolve().parent.parent
CONTEXT_FILES = ("requirements.txt", "container", "docker", ".dockerignore")


def run(cmd: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True, env={**os.environ, **env}, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def size_mb(engine: str, image: str) -> float:
    out = subprocess.run([engine, "image", "inspect", image], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]["Size"] / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="BASE_IMAGE (default: the local stand-in)")
    args = parser.parse_args()
    engine = registry.engine()
    env = {"BUILDAH_ISOLATION": os.environ.get("BUILDAH_ISOLATION", "chroot")}
    base = args.base
    if not base:
        pip = f"{ROOT / '.venv' / 'bin' / 'python'} -m pip"
        base = subprocess.run(["bash", "docker/standin-base.sh"], cwd=ROOT, check=True, text=True,
                              capture_output=True, env={**os.environ, "PIP": pip}).stdout.strip()
        env.update(CUDA_COMPAT="", PRETRAINED_WEIGHTS="false")
    env["BASE_IMAGE"] = base
    image = "localhost/dogbreed-bench:latest"

    cold = run(["bash", "docker/build.sh", image], {**env, "BUILD_FLAGS": "--no-cache"})
    with tempfile.TemporaryDirectory() as tmp:
        for name in CONTEXT_FILES:
            src, dst = ROOT / name, Path(tmp) / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
        init = Path(tmp) / "container" / "dogbreed" / "__init__.py"
        init.write_text(init.read_text() + f"# changed {time.time()}\n")
        warm = run(["bash", "docker/build.sh", image, tmp], env)
    image_mb, base_mb = size_mb(engine, image), size_mb(engine, base)
    subprocess.run([engine, "rmi", "-f", image], capture_output=True)

    print(f"image build with {engine}, base {base}")
    print(f"{'build':<34} {'seconds':>8} {'ratio':>6}")
    print(f"{'cold (no cache)':<34} {cold:>8.1f} {1.0:>6.2f}")
    print(f"{'after a code-only change':<34} {warm:>8.1f} {warm / cold:>6.2f}")
    print(f"{'size':<34} {'MB':>8}")
    print(f"{'base image':<34} {base_mb:>8.0f}")
    print(f"{'project image':<34} {image_mb:>8.0f}")
    print(f"{'added by docker/Dockerfile':<34} {image_mb - base_mb:>8.0f}")


if __name__ == "__main__":
    main()

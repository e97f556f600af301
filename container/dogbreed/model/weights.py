"""The ImageNet ResNet18 weights: where they are looked for, how they are checked.

The image carries the file (downloaded and verified at build time, see
``python -m dogbreed.model.weights --download DIR``); outside the image the torch
cache is used. The file must match the published size and SHA-256, so a
truncated or substituted file is refused, and a missing one is an error:
never a silent random initialisation.

``DOGBREED_WEIGHTS`` points at another file; tests that use a generated
stand-in also set ``DOGBREED_WEIGHTS_SHA256`` to that file's hash.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import torch

try:
    from dogbreed.errors import UserError
except ImportError:  # run as a script: the image's weights stage copies this file alone
    UserError = Exception  # type: ignore[misc,assignment]

URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
FILENAME = "resnet18-f37072fd.pth"
SHA256 = "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
SIZE = 46_830_571
IMAGE_DIR = Path("/opt/weights")  # where the Docker image keeps the file
ENV_PATH = "DOGBREED_WEIGHTS"
ENV_SHA256 = "DOGBREED_WEIGHTS_SHA256"


class WeightsError(UserError):
    """The pretrained weights are missing or do not match; the message says what to do."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected() -> tuple[str, int | None]:
    """(sha256, size) the file must have; the size is known only for the real file."""
    override = os.environ.get(ENV_SHA256, "").strip().lower()
    return (override, None) if override else (SHA256, SIZE)


def expected_sha256() -> str:
    """The SHA-256 of the weights in use: :func:`load_imagenet_state` verifies the file against it."""
    return expected()[0]


def candidates() -> list[Path]:
    """Every place looked at, in order."""
    places = []
    if os.environ.get(ENV_PATH):
        places.append(Path(os.environ[ENV_PATH]))
    places.append(IMAGE_DIR / FILENAME)
    places.append(Path(torch.hub.get_dir()) / "checkpoints" / FILENAME)
    return places


def verify(path: Path) -> None:
    sha, size = expected()
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise WeightsError(
            f"{path} is {actual_size:,} bytes, expected {size:,}: incomplete or wrong file; "
            f"delete it and fetch {URL} again"
        )
    actual = sha256_of(path)
    if actual != sha:
        raise WeightsError(f"{path} has sha256 {actual}, expected {sha}: refusing to use it")


def locate() -> Path:
    places = candidates()
    for path in places:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in places)
    raise WeightsError(
        "pretrained=true but the ImageNet ResNet18 weights are not here "
        f"(looked in {looked}). Build the image with its weights step, set {ENV_PATH} to "
        f"a copy of {FILENAME} (from {URL}), or set pretrained=false to train from scratch"
    )


def load_imagenet_state() -> dict[str, torch.Tensor]:
    """The verified ImageNet state dict (loaded with ``weights_only=True``)."""
    path = locate()
    verify(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # re-raised as WeightsError: any load failure is a bad weights file
        raise WeightsError(f"{path} could not be loaded as a state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def download(dest_dir: Path, url: str = URL) -> Path:
    """Fetch the weights into ``dest_dir`` with torch.hub's downloader (progress on stderr),
    then verify them; a file that fails the check is removed."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / FILENAME
    if final.is_file():
        verify(final)
        return final
    part = final.with_suffix(".part")
    torch.hub.download_url_to_file(url, str(part), progress=sys.stderr.isatty())
    try:
        verify(part)
    except WeightsError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, final)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch or check the ImageNet ResNet18 weights.")
    parser.add_argument("--download", type=Path, metavar="DIR", help="download into DIR")
    parser.add_argument("--check", action="store_true", help="locate and verify the file")
    args = parser.parse_args(argv)
    try:
        if args.download:
            print(download(args.download))
        if args.check or not args.download:
            path = locate()
            verify(path)
            print(f"{path}: ok")
    except (WeightsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

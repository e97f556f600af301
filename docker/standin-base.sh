#!/usr/bin/env bash
# Build, once, a local stand-in for the base image on a machine that cannot pull from a registry
# (CI, offline machines): Debian bookworm (minbase) with Python 3.11 (`python`, headers, venv) and
# the pinned torch/torchvision installed into that Python, as PyTorch's runtime image has them
# installed into its own. Reused when it exists.
#   docker/standin-base.sh [IMAGE]     default IMAGE: localhost/dogbreed-base:torch-<version>
# Needs root, debootstrap and the engine docker/engine.sh picks. The torch wheels are fetched by
# this machine's pip (its configured indexes), then installed inside the stand-in without network.
# Prints the image name on stdout.
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
torch="$(sed -n 's/^torch==//p' "$root_dir/requirements.txt")"
vision="$(sed -n 's/^torchvision==//p' "$root_dir/requirements.txt")"
image="${1:-localhost/dogbreed-base:torch-$torch}"
engine="$("$root_dir/docker/engine.sh")"
pip="${PIP:-python3 -m pip}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "standin-base: $image exists; reusing it" >&2
  echo "$image"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "standin-base: needs root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "standin-base: debootstrap is not installed" >&2; exit 2; }

work="$(mktemp -d /var/tmp/dogbreed-standin.XXXXXX)"
rootfs="$work/rootfs"
cleanup() {
  umount "$rootfs/proc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
started=$(date +%s)
echo "standin-base: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-dev,python3-pip,python-is-python3,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
mount -t proc proc "$rootfs/proc"
py="$(chroot "$rootfs" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
host_py="$($pip --version | sed -n 's/.*(python \([0-9]*\.[0-9]*\)).*/\1/p')"
[ "$host_py" = "$py" ] || {
  echo "standin-base: PIP runs Python $host_py; the stand-in has $py: set PIP to a Python $py pip" >&2; exit 2; }
echo "standin-base: fetching torch==$torch torchvision==$vision for Python $py" >&2
$pip download --quiet --dest "$rootfs/tmp/wheels" --only-binary=:all: \
  -c "$root_dir/requirements.txt" "torch==$torch" "torchvision==$vision" 2>&1 \
  | { grep -v "^WARNING: Location 'file://" || true; } >&2
chroot "$rootfs" env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
  python3 -m pip install --quiet --break-system-packages --root-user-action=ignore --no-warn-script-location \
  --no-index --no-cache-dir --find-links /tmp/wheels \
  "torch==$torch" "torchvision==$vision"
umount "$rootfs/proc"
rm -rf "$rootfs/tmp/wheels" "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
find "$rootfs/usr/local/lib" -name __pycache__ -prune -exec rm -rf {} +
echo "standin-base: importing into $engine as $image" >&2
tar -C "$rootfs" -c . | "$engine" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "standin-base: $image built in $(( $(date +%s) - started )) s" >&2
echo "$image"

#!/usr/bin/env bash
# Entrypoint of the image. SageMaker runs `docker run IMAGE train` and `docker run IMAGE serve`;
# any other command runs as given (`docker run IMAGE dogbreed report /opt/ml`, `... bash`).
#
# CUDA forward compatibility: when the image carries /usr/local/cuda/compat (CUDA_COMPAT build
# argument) and the host's NVIDIA driver is older than the driver those libraries come from, they
# go first on the library path, so the CUDA 13 build runs on hosts with older data-centre drivers.
# The NVIDIA Container Toolkit no longer does this by itself (since 1.17.4).
set -euo pipefail

# (The two paths can be moved for tests.)
compat="${DOGBREED_CUDA_COMPAT_DIR:-/usr/local/cuda/compat}"
driver="${DOGBREED_NVIDIA_VERSION_FILE:-/proc/driver/nvidia/version}"
if [ -d "$compat" ] && [ -r "$driver" ]; then
  # "NVRM version: NVIDIA UNIX [Open ]Kernel Module [for x86_64]  535.230.02  Release Build ..."
  host="$(sed -n 's/^NVRM version:.*[[:space:]]\([0-9]\{3,\}\)\.[0-9]\+.*/\1/p' "$driver" | head -n 1)"
  lib="$(ls "$compat"/libcuda.so.*.* 2>/dev/null | head -n 1 || true)"
  image="${lib##*/libcuda.so.}"
  image="${image%%.*}"
  if [ -n "$host" ] && [ -n "$image" ] && [ "$host" -lt "$image" ]; then
    export LD_LIBRARY_PATH="$compat${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "entrypoint: host NVIDIA driver $host < $image: using the CUDA forward-compatibility libraries" >&2
  fi
fi

case "${1:-serve}" in
  train) shift; exec train "$@" ;;
  serve) shift || true; exec serve "$@" ;;
  *) exec "$@" ;;
esac

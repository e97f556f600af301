#!/usr/bin/env bash
# Build the image from docker/Dockerfile with the engine docker/engine.sh picks.
#   docker/build.sh IMAGE[:TAG] [CONTEXT]   CONTEXT: the repository (default) or a copy of it
# Environment: BASE_IMAGE, CUDA_COMPAT, PRETRAINED_WEIGHTS (build arguments, passed when set),
# BUILD_FLAGS (extra engine flags, e.g. --no-cache), ENGINE (see docker/engine.sh), PLATFORM
# (default linux/amd64, what SageMaker runs).
# Behind a TLS-intercepting proxy, the build trusts the CA bundle your pip trusts (BUILD_CA_BUNDLE,
# default: $PIP_CERT when set): mounted read-only into the build steps (podman/buildah), never
# copied into the image.
# The image is built with a Docker v2 manifest (SageMaker rejects OCI manifests): podman/buildah
# with --format docker, docker without provenance attestations (which would make an OCI index).
set -euo pipefail
image="${1:?usage: docker/build.sh IMAGE[:TAG] [CONTEXT]}"
root="$(cd "$(dirname "$0")/.." && pwd)"
context="${2:-$root}"
engine="$("$root/docker/engine.sh")"
# SageMaker runs x86_64 images: a build on an ARM machine must not make an arm64 one.
args=(-f "$context/docker/Dockerfile" -t "$image" --platform "${PLATFORM:-linux/amd64}")
for name in BASE_IMAGE CUDA_COMPAT PRETRAINED_WEIGHTS; do
  if [ -n "${!name+set}" ]; then args+=(--build-arg "$name=${!name}"); fi
done
ca="${BUILD_CA_BUNDLE:-${PIP_CERT:-}}"
case "$engine" in
  podman|buildah)
    args+=(--format docker)
    if [ -n "$ca" ] && [ -f "$ca" ]; then
      args+=(--volume "$ca:/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt
             --build-arg SSL_CERT_FILE=/run/build-ca.crt)
    fi ;;
  docker) if docker buildx version >/dev/null 2>&1; then args+=(--provenance=false --sbom=false); fi ;;
esac
# The base is pinned by digest when BASE_IMAGE names one (NAME@sha256:...). The default names a tag
# (no registry is reachable where the Dockerfile is written to look its digest up): the image is
# labelled with the base's name and, when the engine knows it, the registry digest it resolved to,
# and the build says how to pin it.
base="${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' "$context/docker/Dockerfile")}"
repo_digest() { "$engine" image inspect --format '{{join .RepoDigests " "}}' "$1" 2>/dev/null | cut -d' ' -f1; }
args+=(--label "org.opencontainers.image.base.name=$base")
digest="$(repo_digest "$base" || true)"
if [ -n "$digest" ]; then args+=(--label "org.opencontainers.image.base.digest=${digest#*@}"); fi
# shellcheck disable=SC2086 # BUILD_FLAGS is a list of flags
read -r -a extra <<< "${BUILD_FLAGS:-}"
echo "build: $engine build ${args[*]} ${extra[*]} $context" >&2
started=$(date +%s)
"$engine" build "${args[@]}" "${extra[@]}" "$context"
size="$("$engine" image inspect --format '{{.Size}}' "$image")"
echo "build: $image built in $(( $(date +%s) - started )) s, $(( size / 1000000 )) MB" >&2
if [[ $base == *@sha256:* ]]; then
  echo "build: base pinned by digest: $base" >&2
elif digest="$(repo_digest "$base")" && [ -n "$digest" ]; then
  echo "build: base $base is pinned by its tag only; this build used $digest (BASE_IMAGE=$digest pins it)" >&2
else
  echo "build: base $base is a local image, with no registry digest to pin" >&2
fi

#!/usr/bin/env bash
# Make a container engine usable on this kind of machine (Debian, root, no Docker daemon, no access
# to public registries): podman from Debian's packages, configured as this sandbox needs it
#  - runtime runc (crun fails on this cgroup setup);
#  - default_ulimits equal to the machine's own limits (higher ones: "setrlimit ... not permitted");
#  - builds with chroot isolation (BUILDAH_ISOLATION=chroot, set by `make test-container`);
#  - 127.0.0.1:5000 (the test registry) allowed without TLS.
# Plus debootstrap (the stand-in base image), Debian's docker-registry (a real local registry),
# docker-compose and the dnsname CNI plugin (the sagemaker SDK's local mode: compose talks to
# `podman system service`; dnsname lets algo-2 resolve algo-1 on the compose network).
# When a docker daemon answers, podman is left out, but the tools the tests need beside the engine
# (debootstrap, docker-registry, docker-compose) are still installed: without them the tests of
# the registry and of the SDK's local mode would be skipped, or fail in CI. Idempotent.
set -euo pipefail
docker_answers=false
if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then docker_answers=true; fi
need=()
if ! $docker_answers; then
  command -v podman >/dev/null || need+=(podman)
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/dnsname ] || need+=(golang-github-containernetworking-plugin-dnsname)
fi
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v curl >/dev/null || need+=(curl)
command -v docker-compose >/dev/null || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "container-engine: missing ${need[*]} (install them, or run as root)" >&2; exit 1; }
  echo "container-engine: installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts the registry's own service where it can; the tests start their own.
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
if $docker_answers; then echo "container-engine: docker answers: using it"; exit 0; fi
[ "$(id -u)" = 0 ] || exit 0
mkdir -p /etc/containers/registries.conf.d
conf=/etc/containers/containers.conf
# Limits no higher than this machine allows; buildah's chroot isolation starts from nproc 32768.
nofile="$(ulimit -Hn)"
nproc="$(ulimit -Hu)"
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
if ! grep -q "dogbreed CI" "$conf" 2>/dev/null; then
  cat >> "$conf" <<CONF
# dogbreed CI: what podman needs on this machine (see .ci/container-engine.sh)
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
CONF
fi
cat > /etc/containers/registries.conf.d/50-dogbreed-test-registry.conf <<'CONF'
[[registry]]
location = "127.0.0.1:5000"
insecure = true
CONF
podman info --format '{{.Store.GraphDriverName}} storage, runtime {{.Host.OCIRuntime.Name}}' \
  | sed 's/^/container-engine: podman ready: /'

#!/usr/bin/env bash
# Print the container engine to use: ENGINE if set, else a docker whose daemon answers, else podman.
# A docker client with no daemon does not count. Exit 2 with a clear message when none works.
set -euo pipefail
if [ -n "${ENGINE:-}" ]; then
  command -v "$ENGINE" >/dev/null || { echo "ENGINE=$ENGINE: no such command" >&2; exit 2; }
  echo "$ENGINE"; exit 0
fi
if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then echo docker; exit 0; fi
if command -v podman >/dev/null; then echo podman; exit 0; fi
if command -v docker >/dev/null; then
  echo "no container engine: 'docker' is installed but its daemon does not answer (docker info), and podman is not installed" >&2
else
  echo "no container engine: install Docker (with its daemon running) or podman" >&2
fi
exit 2

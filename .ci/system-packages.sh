#!/usr/bin/env bash
# System packages the build and tests need (Debian). Installs only what is missing; as root.
# Arguments COMMAND=PACKAGE add to them: PACKAGE when COMMAND is missing (e.g. java=openjdk-17-jre-headless).
set -euo pipefail
need=()
for pair in "$@"; do command -v "${pair%%=*}" >/dev/null || need+=("${pair#*=}"); done
command -v gcc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v curl >/dev/null || need+=(curl)
command -v file >/dev/null || need+=(file)
# Debian splits `python3 -m venv` (ensurepip) into python3-venv; a minimal install lacks it.
python3 -c "import ensurepip" 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "missing system packages: ${need[*]} (install them, or run as root)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"

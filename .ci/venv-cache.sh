#!/usr/bin/env bash
# CI's cached virtual environment: prints its folder, ~/.cache/dogbreed-ci/venv-<hash of the pins,
# requirements.txt and requirements-nodeps.txt> (DOGBREED_CI_CACHE moves it), and links the clone's
# .venv to it.
#
# pip writes the interpreter's path as it was called into every console script it installs, so the
# environment must be installed through this folder (.ci/run hands it to make as VENV), never through
# a clone's .venv link: scripts installed that way name a clone that CI deletes (moto_server did). A
# cached environment with such dead scripts, made before this rule, is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${DOGBREED_CI_CACHE:-$HOME/.cache/dogbreed-ci}"
venv="$cache/venv-$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -c1-16)"

dead_scripts() {  # the scripts in $1/bin whose "#!" line names an interpreter that is not there
  local script line
  for script in "$1"/bin/*; do
    [ -f "$script" ] && [ ! -L "$script" ] || continue
    IFS= read -r line < "$script" 2>/dev/null || continue
    [[ $line == '#!/'* ]] || continue
    line="${line#\#!}"
    [ -e "${line%% *}" ] || echo "$script"
  done
}

if [ -d "$venv" ] && [ -n "$(dead_scripts "$venv")" ]; then
  echo "ci: $venv has scripts for an interpreter that is gone ($(dead_scripts "$venv" | head -1)...):" \
       "rebuilding it" >&2
  rm -rf "$venv"
fi
[ -x "$venv/bin/python" ] || { mkdir -p "$cache" && python3 -m venv "$venv"; }
ln -sfn "$venv" .venv
echo "ci: virtual environment cached in $venv" >&2
echo "$venv"

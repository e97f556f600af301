#!/usr/bin/env bash
# Serve a model folder on http://localhost:${PORT:-8080} (/ping, /invocations), as SageMaker would.
#   local_test/serve_model.sh [MODEL_DIR]     default: the newest model under work/runs/
# Runs the `serve` program of the project's virtual environment (make install), no container;
# local_test/serve_local.sh runs the same program in the image.
# Stop it with Ctrl-C (SIGTERM/SIGINT drain in-flight requests first).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model_dir="${1:-}"
if [ -z "$model_dir" ]; then
  model_dir="$(ls -dt "$root"/work/runs/*/opt_ml/model 2>/dev/null | head -n 1 || true)"
  [ -n "$model_dir" ] || { echo "serve_model.sh: no model under work/runs/: run 'make demo' or pass MODEL_DIR" >&2; exit 2; }
fi
[ -f "$model_dir/metadata.json" ] || { echo "serve_model.sh: $model_dir has no metadata.json: not a model folder written by train" >&2; exit 2; }
serve="$root/.venv/bin/serve"
[ -x "$serve" ] || { echo "serve_model.sh: $serve missing: run 'make install'" >&2; exit 2; }
echo "serving $model_dir on port ${PORT:-8080}"
DOGBREED_BIND_HOST="${BIND_HOST:-127.0.0.1}" SAGEMAKER_BIND_TO_PORT="${PORT:-8080}" exec "$serve" --model-dir "$model_dir"

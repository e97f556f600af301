#!/usr/bin/env bash
# Serve the model of TEST_DIR from the image, exactly as SageMaker runs it:
#   docker run -p 127.0.0.1:8080:8080 -v TEST_DIR:/opt/ml IMAGE serve
#   local_test/serve_local.sh [IMAGE] [TEST_DIR]    defaults: dogbreed:latest, local_test/test_dir
# Train first (local_test/train_local.sh). PORT picks the host port (default 8080); Ctrl-C stops
# the container (SIGTERM: in-flight requests finish first). Then: local_test/predict.sh photo.jpg
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
image="${1:-dogbreed:latest}"
test_dir="$(realpath -m "${2:-$root/local_test/test_dir}")"
port="${PORT:-8080}"
engine="$("$root/docker/engine.sh")"
[ -f "$test_dir/model/metadata.json" ] || {
  echo "serve_local.sh: no trained model in $test_dir/model: run local_test/train_local.sh first" >&2; exit 2; }
read -r -a extra <<< "${RUN_FLAGS:-}"
echo "serve_local.sh: $engine run --rm -p 127.0.0.1:$port:8080 -v $test_dir:/opt/ml $image serve" >&2
exec "$engine" run --rm "${extra[@]}" -p "127.0.0.1:$port:8080" -v "$test_dir:/opt/ml" "$image" serve

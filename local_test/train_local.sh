#!/usr/bin/env bash
# Train in the image, exactly as SageMaker runs it: docker run -v TEST_DIR:/opt/ml IMAGE train
#   local_test/train_local.sh [IMAGE] [TEST_DIR]    defaults: dogbreed:latest, local_test/test_dir
# TEST_DIR is an /opt/ml tree (hyperparameters.json, inputdataconfig.json, resourceconfig.json and a
# small generated dataset under input/data/); it is generated when missing (nothing binary is
# committed). The model lands in TEST_DIR/model, a failure's reason in TEST_DIR/output/failure.
# ENGINE=docker|podman picks the engine (default: docker/engine.sh). Extra engine flags: RUN_FLAGS.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
image="${1:-dogbreed:latest}"
test_dir="$(realpath -m "${2:-$root/local_test/test_dir}")"
engine="$("$root/docker/engine.sh")"
if [ ! -f "$test_dir/input/config/hyperparameters.json" ]; then
  python="$root/.venv/bin/python"
  [ -x "$python" ] || { echo "train_local.sh: $python missing: run 'make install'" >&2; exit 2; }
  echo "train_local.sh: generating $test_dir" >&2
  mkdir -p "$test_dir"
  "$python" "$root/local_test/testdata.py" "$test_dir" >/dev/null
fi
rm -rf "$test_dir/model" "$test_dir/output"
mkdir -p "$test_dir/model" "$test_dir/output"
read -r -a extra <<< "${RUN_FLAGS:-}"
# The built-in trainer needs no network (the image carries the weights); RUN_FLAGS may give one.
case " ${RUN_FLAGS:-} " in *" --net"*) ;; *) extra=(--network none "${extra[@]}") ;; esac
echo "train_local.sh: $engine run --rm ${extra[*]} -v $test_dir:/opt/ml $image train" >&2
status=0
"$engine" run --rm "${extra[@]}" -v "$test_dir:/opt/ml" "$image" train || status=$?
if [ "$status" != 0 ]; then
  echo "train_local.sh: training failed (exit $status): $(head -n 1 "$test_dir/output/failure" 2>/dev/null || echo 'no failure file')" >&2
  exit "$status"
fi
echo "train_local.sh: model in $test_dir/model:" >&2
ls -l "$test_dir/model" >&2

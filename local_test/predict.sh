#!/usr/bin/env bash
# Send one photo to /invocations and print the JSON answer (the top breeds).
#   local_test/predict.sh IMAGE [TOP_K]       server: http://localhost:${PORT:-8080}
# The Content-Type is taken from the file's content (file --mime-type), as the endpoint expects.
set -euo pipefail
image="${1:?usage: predict.sh IMAGE [TOP_K]}"
top_k="${2:-5}"
[ -f "$image" ] || { echo "predict.sh: $image: no such file" >&2; exit 2; }
type="$(file -b --mime-type "$image" 2>/dev/null || true)"
case "$type" in
  image/*) ;;
  *) type="application/x-image" ;;  # let the server decide from the bytes
esac
url="http://localhost:${PORT:-8080}/invocations"
reply="$(curl -s -w '\n%{http_code}' -X POST "$url" -H "Content-Type: $type" \
  -H "X-Amzn-SageMaker-Custom-Attributes: top_k=$top_k" --data-binary @"$image")" || {
  echo "predict.sh: no answer from $url (is the server running? local_test/serve_local.sh)" >&2; exit 1; }
status="${reply##*$'\n'}"
body="${reply%$'\n'*}"
if [ "$status" != 200 ]; then
  echo "predict.sh: HTTP $status: $body" >&2
  exit 1
fi
if command -v python3 >/dev/null; then printf '%s' "$body" | python3 -m json.tool; else printf '%s\n' "$body"; fi

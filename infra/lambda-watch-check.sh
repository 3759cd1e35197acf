#!/usr/bin/env bash
# `cargo lambda watch` (the README's Docker-free way to serve the real function binaries), run
# once: start it, send one request to the health function through its Lambda function URL
# emulation, check the answer, stop it. Fails loudly otherwise.
#
#   infra/lambda-watch-check.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/infra/.venv-tools/bin:$PATH"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
cargo lambda watch --ignore-changes -p functions -A 127.0.0.1 -P "$port" >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  pkill -P "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
url="http://127.0.0.1:$port/lambda-url/health/health"
# The first invocation compiles the function (debug): allow it minutes, not seconds.
deadline=$(( $(date +%s) + 600 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if body="$(curl -sf --max-time 120 "$url" 2>/dev/null)"; then
    case "$body" in
      *'"status":"ok"'*) echo "cargo lambda watch: GET /health through the health function: $body"; exit 0 ;;
      *) echo "cargo lambda watch: unexpected answer: $body" >&2; exit 1 ;;
    esac
  fi
  kill -0 "$pid" 2>/dev/null || { echo "cargo lambda watch exited:" >&2; cat "$log" >&2; exit 1; }
  sleep 2
done
echo "cargo lambda watch: no answer from $url" >&2
tail -50 "$log" >&2
exit 1

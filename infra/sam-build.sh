#!/usr/bin/env bash
# `sam build` (rust-cargolambda: cargo lambda build --release --arm64 per
# function), timed, then the size of every bootstrap binary. Not part of infra/test.sh: a cold
# release arm64 build of every function takes longer than CI should spend on every run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
# shellcheck source=infra/lib.sh
. infra/lib.sh
ensure_tools_venv
rustup target add aarch64-unknown-linux-gnu >/dev/null
# cargo-lambda finds zig through `python3 -m ziglang` (the venv's python).
export PATH="$root/infra/.venv-tools/bin:$PATH"
t0=$(date +%s)
sam build "$@"
echo "sam build took $(( $(date +%s) - t0 )) s"
for f in .aws-sam/build/*Function/bootstrap; do
  printf '%-45s %8s bytes  %s\n' "$f" "$(stat -c %s "$f")" "$(file -b "$f" | cut -d, -f1-2)"
done

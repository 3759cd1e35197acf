#!/usr/bin/env bash
# `sam build` of every function, timed, then the size of every bootstrap binary. The functions
# use the makefile build method: one `cargo lambda build --release --arm64` builds every binary
# (infra/lambda-artifact.sh), and SAM copies each into its artifact. Not part of infra/test.sh:
# a cold release arm64 build costs more than CI should spend on every run.
#
#   infra/sam-build.sh [sam build options]
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
total=0
for f in .aws-sam/build/*Function/bootstrap; do
  size=$(stat -c %s "$f")
  total=$((total + size))
  printf '%-45s %10s bytes  %s\n' "$f" "$size" "$(file -b "$f" | cut -d, -f1-2)"
done
echo "total: $total bytes in $(ls .aws-sam/build/*Function/bootstrap | wc -l) functions"
